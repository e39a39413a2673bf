"""The one place sshwrap starts a process of its own, detached: the engine of a state dir, a
shared connection's master supervisor (``python -m sshwrap --engine ...``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

#: typing would cost the express lane, which starts engines, part of its start-up; type
#: checkers take the names.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from typing import TextIO

#: The first argument of every process mode of sshwrap's own; see sshwrap/__main__.py.
ENGINE_MARK = "--engine"
#: After ENGINE_MARK: the engine in the foreground, as a systemd unit runs it.
FOREGROUND_MARK = "--foreground"
#: The line a held engine waits for on its stdin before it does anything (see HeldEngine).
GO = b"go\n"

#: What every process sshwrap starts keeps of the environment it is started from: who the
#: user is, where their files are, how text is read. Only names listed here are kept: a
#: ``password_env`` may name any other variable, and a password must reach no process but
#: the one that needs it (runtime/client/auth.py secret_for refuses a listed name).
PROCESS_ENVIRONMENT = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
    "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
})
#: What the engine keeps of the environment of the command that starts it. The engine lives
#: on, its first environment readable in /proc for its lifetime. Each request carries its
#: asker's environment, from which the clients it starts take CLIENT_ENVIRONMENT.
ENGINE_ENVIRONMENT = PROCESS_ENVIRONMENT | {
    # The system keyring (password_keyring) is read in the engine for the express lane.
    "DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
    "PYTHONPYCACHEPREFIX", "PYTHONUTF8", "PYTHONSAFEPATH",
    "SSHWRAP_PROFILES", "SSHWRAP_NETWATCH", "SSHWRAP_DEBUG", "SSHWRAP_LOG_CAP",
}
#: What an ssh or plink client keeps (every one sshwrap starts: a tunnel's, a shared master,
#: ``ssh -O``, a check's login, ``ssh -G``, a host-key fetch), besides its own askpass
#: channel: the agent socket and Kerberos credentials it may log in with. A ProxyJump or a
#: ProxyCommand of the user's config runs through SHELL and PATH.
CLIENT_ENVIRONMENT = PROCESS_ENVIRONMENT | {"SSH_AUTH_SOCK", "KRB5CCNAME", "KRB5_CONFIG"}
#: Where the engine finds its state dir (runtime/system/paths.py STATE_DIR_ENV).
_STATE_DIR_ENV = "SSHWRAP_STATE_DIR"


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


def kept_environment(env: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    """The variables of ``env`` that ``names`` lists (one of the sets above)."""
    return {name: value for name, value in env.items() if name in names}


def engine_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` the engine is started with: ENGINE_ENVIRONMENT."""
    return kept_environment(env, ENGINE_ENVIRONMENT)


def client_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of ``env`` (default: ours) an ssh or plink client is started with:
    CLIENT_ENVIRONMENT."""
    return kept_environment(os.environ if env is None else env, CLIENT_ENVIRONMENT)


def spawn_detached(argv: Sequence[str], log_path: Path | None, env: Mapping[str, str], *,
                   secret: str | None = None, hold: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, in ``/``, output appended to ``log_path``
    (0600; discarded when None), stdin a pipe that carries ``secret`` (one line; never argv,
    env or state) and is closed at once, or kept open when ``hold`` (see HeldEngine)."""
    if log_path is None:
        output = os.open(os.devnull, os.O_WRONLY)
    else:
        from sshwrap.runtime.system.paths import open_private

        output = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=output,
                                   stderr=output, start_new_session=True, close_fds=True,
                                   cwd="/", env=dict(env))
    finally:
        os.close(output)
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            if secret is not None:
                process.stdin.write(secret.encode() + b"\n")
            if not hold:
                process.stdin.close()
            else:
                process.stdin.flush()
    return process


def read_secret(stream: TextIO | None) -> str | None:
    """One optional line handed over through the stdin pipe (see spawn_detached); kept in
    memory for every restart. None when nothing was given."""
    if stream is None or stream.closed or stream.isatty():
        return None
    line = stream.readline()
    return line.rstrip("\n") or None


class HeldEngine:
    """An engine started before it may act: its interpreter starts and imports the runtime
    while the command that started it checks its input, then waits for GO on its stdin.
    Until then it has written nothing, not even its state dir; without GO it exits.

    So the express lane of a first ``up`` overlaps the engine's start-up with its own check
    of the profiles, and bad input still changes nothing.
    """

    def __init__(self, root: str, env: Mapping[str, str], log_path: Path | None = None) -> None:
        self.process = spawn_detached(
            own_command(), log_path,
            {**engine_environment(env), _STATE_DIR_ENV: os.path.abspath(root)}, hold=True)
        self.released = False

    def release(self) -> subprocess.Popen[bytes]:
        """Let it serve its state dir (its own output goes to its log from then on)."""
        self.released = True
        stdin = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # it died before: the caller sees it
                stdin.write(GO)
                stdin.close()
        return self.process

    def cancel(self) -> None:
        """End it unless released: it has written nothing, and there is nothing to stop
        gracefully. Safe to repeat."""
        if self.released or self.process.returncode is not None:
            return
        self.process.kill()
        self.process.wait()
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()


def released(stream_fd: int = 0) -> bool:
    """In a detached engine: wait until the command that started it lets it act (GO on the
    stdin pipe, see HeldEngine); False when that command went without (bad input, or it
    ended). An engine whose stdin is not a pipe (started by hand, or by a service manager)
    acts at once."""
    import stat

    try:
        if not stat.S_ISFIFO(os.fstat(stream_fd).st_mode):
            return True
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(stream_fd, len(GO) - len(line))
            if not chunk:
                break
            line += chunk
    except OSError:
        return True
    return line == GO


def log_output_to(log_path: Path) -> None:
    """Send this process's stdout and stderr to ``log_path`` (appended, 0600)."""
    sys.stdout.flush()
    sys.stderr.flush()
    from sshwrap.runtime.system.paths import open_private

    fd = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
