"""Where a state dir and its resident supervisor's socket are, found with os.path alone: the
express lane of ``up`` looks here before it imports anything else."""

from __future__ import annotations

import os

#: typing would cost the express lane's process a tenth of its start-up; type checkers take
#: the name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

STATE_DIR_ENV = "SSHWRAP_STATE_DIR"
#: How long up and restart wait for every forward to be verified (--wait), by default: here,
#: where both front ends of the command line read it first.
DEFAULT_WAIT = 15.0
#: The state dir's folder of control sockets, when its paths are short enough.
CONTROL_DIR = "ctl"
SUPERVISOR_SOCKET = "supervisor"
#: Longest socket path bound: Linux allows 107 bytes, BSD and macOS 103. ssh binds a
#: temporary name first (the control path plus "." and 16 random characters), then renames it.
MAX_SOCKET_PATH = 103
SSH_TEMP_SUFFIX = 17
#: The length of a shared connection's key, the longest socket name in the folder.
KEY_LENGTH = 16


def state_root(env: Mapping[str, str]) -> str:
    """``SSHWRAP_STATE_DIR`` if set, else ``$XDG_STATE_HOME/sshwrap`` (~/.local/state/sshwrap);
    absolute, so every process of it agrees on the paths inside."""
    if env.get(STATE_DIR_ENV):
        return os.path.abspath(os.path.expanduser(env[STATE_DIR_ENV]))
    state_home = env.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.abspath(os.path.join(state_home, "sshwrap"))


def entry_problem(info: os.stat_result, *, file: bool) -> str | None:
    """What makes an entry of a state dir (its lstat ``info``) unusable: not this user's,
    writable by others, a symlink, or not a regular file (``file``) or folder; None when it
    is fine. The one judgement runtime/system/paths.py applies to every entry."""
    import stat  # os has imported it already

    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if file and not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if not file and not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return "belongs to another user"
    if info.st_mode & 0o022:
        return "can be written by other users"
    return None


def private_socket_folder(root: str) -> bool:
    """True when the state dir ``root`` and its ``ctl`` folder pass ``entry_problem``: only
    then does the express lane hand its request (and environment) to the socket there; else
    the full command line judges them, and says what is wrong. True when they do not exist
    yet."""
    for path, follow in ((root, True), (os.path.join(root, CONTROL_DIR), False)):
        try:
            info = os.stat(path) if follow else os.lstat(path)
        except FileNotFoundError:
            return True  # nothing listens there yet; what starts the engine judges it
        except OSError:
            return False
        if entry_problem(info, file=False) is not None:
            return False
    return True


def control_dir_fits(folder: str | os.PathLike[str]) -> bool:
    """True when every socket sshwrap or ssh makes in ``folder`` has a path short enough."""
    longest = len(os.fsencode(folder)) + 1 + KEY_LENGTH + SSH_TEMP_SUFFIX
    return longest <= MAX_SOCKET_PATH


def preferred_supervisor_socket(root: str) -> str | None:
    """The resident supervisor's socket in ``<state>/ctl``, or None when that path would be
    too long (it then lives in a folder that only the full command line works out)."""
    folder = os.path.join(root, CONTROL_DIR)
    return os.path.join(folder, SUPERVISOR_SOCKET) if control_dir_fits(folder) else None


#: How long a client waits for room in the engine's full listen backlog, when it sets no
#: time of its own.
CONNECT_WAIT = 30.0


def connect(conn: Any, path: str, timeout: float | None = None) -> None:
    """Connect ``conn`` (a unix stream socket) to the engine at ``path``.

    A busy engine's listen backlog may be full: a socket with a timeout is then refused at
    once (EAGAIN), and tries again, a little later each time, until ``timeout`` seconds
    (``CONNECT_WAIT`` when None) have passed: TimeoutError then. Any other failure (nothing
    listens, no such file) is raised as it comes.
    """
    import errno
    import time

    deadline = time.monotonic() + (CONNECT_WAIT if timeout is None else timeout)
    pause = 0.002
    while True:
        try:
            conn.connect(path)
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        if time.monotonic() + pause >= deadline:
            raise TimeoutError(errno.ETIMEDOUT, "the engine's socket stayed full (it is busy)")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
