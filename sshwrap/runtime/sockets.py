"""Who listens where (one psutil scan of the machine's listening sockets), and who connects."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Listener:
    """One listening socket. ``address`` is the IP text or the unix socket path; ``pid`` is
    None when the owner is not visible to this user."""

    family: str  # "ipv4", "ipv6" or "unix"
    address: str
    port: int | None
    pid: int | None


@dataclass(frozen=True)
class ProcessInfo:
    """A process as people recognise it; ``name`` is empty and ``cmdline`` () when it is gone
    or not visible to this user."""

    pid: int
    name: str
    cmdline: tuple[str, ...]


def listening_sockets(pid: int | None = None) -> list[Listener]:
    """Every listening TCP socket (IPv4 and IPv6) and every bound unix stream socket.

    This is exactly one psutil scan, whatever the caller does with it: callers that check
    many tunnels share one result instead of scanning per tunnel. With ``pid``, only that
    process's sockets: far cheaper (no walk over every process), for tight readiness polls.
    """
    import psutil

    found: dict[tuple[str, str, int | None, int | None], Listener] = {}
    if pid is None:
        connections: list[Any] = psutil.net_connections(kind="all")
    else:
        try:
            connections = [_Owned(conn, pid)
                           for conn in psutil.Process(pid).net_connections(kind="all")]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return []
    for conn in connections:
        if conn.type != socket.SOCK_STREAM:
            continue
        if conn.family == socket.AF_UNIX:
            path = conn.laddr if isinstance(conn.laddr, str) else ""
            if not path:
                continue
            listener = Listener("unix", path, None, conn.pid)
        elif conn.family in (socket.AF_INET, socket.AF_INET6):
            if conn.status != psutil.CONN_LISTEN or not conn.laddr:
                continue
            family = "ipv4" if conn.family == socket.AF_INET else "ipv6"
            listener = Listener(family, conn.laddr.ip, conn.laddr.port, conn.pid)
        else:
            continue
        found.setdefault((listener.family, listener.address, listener.port, listener.pid),
                         listener)
    return list(found.values())


class _Owned:
    """A per-process connection (which psutil gives without a pid) with its pid added."""

    def __init__(self, conn: Any, pid: int) -> None:
        self.type, self.family, self.laddr, self.status = (
            conn.type, conn.family, conn.laddr, conn.status)
        self.pid = pid


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
