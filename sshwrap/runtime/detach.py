"""The one place sshwrap starts a process of its own, detached: the engine of a state dir, a
shared connection's master supervisor (``python -m sshwrap --engine ...``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

#: The first argument of every process mode of sshwrap's own; see sshwrap/__main__.py.
ENGINE_MARK = "--engine"
#: After ENGINE_MARK: the engine in the foreground, as a systemd unit runs it.
FOREGROUND_MARK = "--foreground"


def own_command(*mode: str) -> list[str]:
    """The argv of one of sshwrap's own process modes, run with this Python: none for the
    engine, ``master PROFILE ...`` for a shared connection's master."""
    return [sys.executable, "-m", "sshwrap", ENGINE_MARK, *mode]


def is_engine(argv: Sequence[str]) -> bool:
    """True when ``argv`` is an engine's command line, detached or in the foreground (not a
    master's)."""
    words = tuple(argv)
    for at in range(len(words) - 2):
        if words[at:at + 3] == ("-m", "sshwrap", ENGINE_MARK):
            return words[at + 3:at + 4] in ((), (FOREGROUND_MARK,))
    return False


def spawn_detached(argv: Sequence[str], log_path: Path, env: Mapping[str, str], *,
                   secret: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, in ``/``, output appended to ``log_path``
    (0600), stdin a pipe that carries ``secret`` (one line; never argv, env or state) and
    is closed at once."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=log, stderr=log,
                                   start_new_session=True, close_fds=True, cwd="/",
                                   env=dict(env))
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            if secret is not None:
                process.stdin.write(secret.encode() + b"\n")
            process.stdin.close()
    return process


def read_secret(stream: TextIO | None) -> str | None:
    """One optional line handed over through the stdin pipe (see spawn_detached); kept in
    memory for every restart. None when nothing was given."""
    if stream is None or stream.closed or stream.isatty():
        return None
    line = stream.readline()
    return line.rstrip("\n") or None
