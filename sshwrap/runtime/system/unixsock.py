"""A killed client's stale unix-socket file, removed right before a listener binds its path."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

from sshwrap.core.model import ForwardType, Profile, UnixAddress
from sshwrap.errors import ForwardingFailed

#: How long a connect() may take to say whether something listens (a full backlog blocks).
PROBE_TIMEOUT = 2.0


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a socket"


def _refuse(path: Path, why: str) -> ForwardingFailed:
    return ForwardingFailed(
        f"unix socket {path}: {why}; sshwrap leaves it alone, so the tunnel cannot listen there",
        hint="remove it yourself or choose another listen path if it is not needed")


def _listening(path: Path) -> bool:
    """True when a connect() to the socket is taken: something listens on it.

    Only a refused connect() means nothing does; any other answer (no permission, a full
    backlog, a path too long to name) counts as "someone may", so nothing is removed.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        return False
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return False
        raise _refuse(path, f"cannot tell whether something listens on it ({exc})") from None
    finally:
        probe.close()
    return True


def clear_stale_socket(path: Path) -> bool:
    """Make ``path`` free for a listener to bind; True if a stale socket file was removed.

    A socket file is removed only when it is a socket (not followed if a symlink), owned by
    this user, and nothing listens on it. Anything else there (a regular file, a directory, a
    symlink, someone else's socket, a live listener) raises ForwardingFailed and is left.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(before.st_mode):
        raise _refuse(path, f"the path exists and is {_kind(before.st_mode)}")
    if before.st_uid != os.geteuid():
        raise _refuse(path, f"the socket belongs to uid {before.st_uid}, not to this user")
    if _listening(path):
        raise _refuse(path, "a program is listening on it")
    # the same file as checked: a socket put there since then is not ours to remove
    with contextlib.suppress(FileNotFoundError):
        now = os.lstat(path)
        if (now.st_ino, now.st_dev) != (before.st_ino, before.st_dev):
            raise _refuse(path, "it was replaced while sshwrap looked at it")
        os.unlink(path)
        return True
    return False


def clear_stale_paths(paths: Iterable[str | None]) -> None:
    """``clear_stale_socket`` for each listen path given (None entries are TCP listeners); the
    first path that cannot be freed raises ForwardingFailed, before any client starts."""
    for path in paths:
        if path:
            clear_stale_socket(Path(path).expanduser())


def clear_stale_listeners(profile: Profile) -> None:
    """Before a client of ``profile`` starts: every local forward's unix listen path free."""
    clear_stale_paths(f.listen.path for f in profile.forwards
                       if f.type is ForwardType.LOCAL and isinstance(f.listen, UnixAddress))
