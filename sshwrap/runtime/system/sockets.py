"""Who a process is, and who is at the other end of a unix socket (who listens where is read
by runtime/system/listeners.py alone)."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

__all__ = ["ProcessInfo", "peer_is_same_user", "process_info"]


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
