"""Who a process is, and who is at the other end of a unix socket (who listens where is read
by runtime/system/listeners.py alone)."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

__all__ = ["ProcessInfo", "bind_private", "peer_is_same_user", "process_info"]


@dataclass(frozen=True)
class ProcessInfo:
    """A process as people recognise it; ``name`` is empty and ``cmdline`` () when it is gone
    or not visible to this user."""

    pid: int
    name: str
    cmdline: tuple[str, ...]


def process_info(pid: int) -> ProcessInfo:
    """Name and command line of ``pid`` (empty when it is gone or hidden from us)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return ProcessInfo(pid, proc.name(), tuple(proc.cmdline()))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ProcessInfo(pid, "", ())


def peer_is_same_user(conn: socket.socket) -> bool:
    """True when the process at the other end of a unix socket runs as this user
    (SO_PEERCRED): only they may ask for a secret or tell a supervisor what to do."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    uid = int.from_bytes(creds[4:8], sys.byteorder)
    return uid == os.geteuid()


def bind_private(sock: socket.socket, path: str | os.PathLike[str]) -> None:
    """Bind the unix socket ``sock`` at ``path`` and make it 0600. ``path`` must be in a folder
    only this user can enter, which is what keeps others out before the chmod. Never by
    narrowing the umask around ``bind``: the umask is the whole process's, and a thread
    creating a file meanwhile (an askpass program, 0700) would get it narrowed too."""
    sock.bind(os.fspath(path))
    os.chmod(path, 0o600)
