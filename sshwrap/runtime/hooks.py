"""A profile's hooks: run detached on a state change, bounded in time, output to its log."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sshwrap.core.model import Profile
from sshwrap.textsafe import escaped

if TYPE_CHECKING:
    from sshwrap.runtime.events import Event

#: One line of a hook's output is cut here in the log.
MAX_LINE = 4096
#: How long an exiting engine lets running hooks finish before it kills them.
DRAIN = 5.0

#: The hooks running in this process: an exiting engine ends them rather than leave them
#: running with nobody to enforce their timeout.
_running: dict[threading.Thread, subprocess.Popen[bytes] | None] = {}
_running_lock = threading.Lock()


def hook_env(profile: Profile, event: Event, base: Mapping[str, str] | None) -> dict[str, str]:
    """The hook's environment: the tunnel's own (no password variable, no askpass), and
    SSHWRAP_TUNNEL, SSHWRAP_STATE, SSHWRAP_REASON."""
    env = dict(os.environ if base is None else base)
    from sshwrap.runtime.auth import ASKPASS_ENV

    # Neither the password's variable nor the askpass channel: a hook never gets a secret.
    from sshwrap.runtime.questions import PROMPT_ENV

    for name in (*ASKPASS_ENV, PROMPT_ENV, profile.password_env or ""):
        env.pop(name, None)
    env.update(SSHWRAP_TUNNEL=profile.name, SSHWRAP_STATE=event.to_state,
               SSHWRAP_REASON=event.reason)
    return env


def run_for(profile: Profile, event: Event, base_env: Mapping[str, str] | None,
            log_path: Path) -> threading.Thread | None:
    """Start the hook of ``event``'s new state, if the profile has one, in a thread of its
    own; the caller goes on at once. The thread, for tests to join."""
    argv = profile.hooks.for_state(event.to_state)
    if not argv:
        return None
    thread = threading.Thread(
        target=_run_tracked, name=f"hook {profile.name} {event.to_state}",
        args=(list(argv), hook_env(profile, event, base_env), log_path,
              f"on_{event.to_state}", float(profile.hooks.timeout)), daemon=True)
    with _running_lock:
        _running[thread] = None
    thread.start()
    return thread


def drain(timeout: float = DRAIN) -> None:
    """Give the running hooks ``timeout`` seconds to end, then kill those left (the
    process is exiting: nothing would enforce their timeout any more)."""
    deadline = time.monotonic() + timeout
    with _running_lock:
        threads = list(_running)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with _running_lock:
        left = [p for t, p in _running.items() if t.is_alive() and p is not None]
    for process in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _run_tracked(*args: Any) -> None:
    try:
        run(*args)
    finally:
        _track(None)


def _track(process: subprocess.Popen[bytes] | None) -> None:
    with _running_lock:
        me = threading.current_thread()
        if process is None:
            _running.pop(me, None)
        elif me in _running:
            _running[me] = process


def _log(log_path: Path, text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(f"--- sshwrap hook {stamp}: {text}\n")


def run(argv: list[str], env: dict[str, str], log_path: Path, what: str,
        timeout: float) -> int | None:
    """Run one hook to its end, or kill its process group at ``timeout``; its exit status
    (None when it could not start or was killed). Every line it writes goes to the log,
    marked as the hook's, so that it is never read as the client's."""
    program = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        _log(log_path, f"{what}: {escaped(argv[0])} not found on PATH; not run")
        return None
    try:
        process = subprocess.Popen(
            [program, *argv[1:]], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, cwd="/", close_fds=True)
    except OSError as error:
        _log(log_path, f"{what}: {escaped(argv[0])} could not start: {error.strerror}")
        return None
    _track(process)
    _log(log_path, f"{what}: started {escaped(program)} (pid {process.pid})")
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        # Its own session and group: everything it started goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        for raw in process.stdout or ():  # ends when every process of the group closed it
            line = raw.decode("utf-8", "replace").rstrip("\n")[:MAX_LINE]
            _log(log_path, f"{what}: | {escaped(line)}")
        code = process.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        _log(log_path, f"{what}: killed after {timeout:g} s")
        return None
    _log(log_path, f"{what}: exited with status {code}")
    return code
