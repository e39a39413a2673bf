"""The one reader of listening sockets: TCP from sock_diag (or /proc), every socket from psutil.

Readiness, ``status``, ``check``, ``up`` of a running tunnel, ``down`` and ``ports`` read
here. The quick read is the kernel's listening table over sock_diag (runtime/system/sockdiag.py),
or /proc/net/tcp where netlink is not to be had: every TCP listener with its inode, which
names its owner once a process's socket inodes are read from its /proc fd links. The full
scan (psutil: every process's sockets) also gives unix sockets and a foreign owner's pid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sshwrap.runtime.system import sockdiag
from sshwrap.runtime.system.sockdiag import TcpListener

__all__ = ["Listener", "TcpListener", "as_listener", "attributed", "listening_sockets",
           "socket_fds", "socket_inodes", "tcp_listeners"]

_TCP_LISTEN_HEX = "0A"


@dataclass(frozen=True)
class Listener:
    """One listening socket. ``address`` is the IP text or the unix socket path; ``pid`` is
    None when the owner is not visible to this user (or not looked for)."""

    family: str  # "ipv4", "ipv6" or "unix"
    address: str
    port: int | None
    pid: int | None


def tcp_listeners(*, proc: bool = True) -> list[TcpListener] | None:
    """Every listening TCP socket of this network namespace with its inode: from sock_diag,
    else (``proc``) from /proc/net/tcp and tcp6; None where neither can be read."""
    found = sockdiag.tcp_listeners()
    return found if found is not None or not proc else proc_tcp_listeners()


def proc_tcp_listeners() -> list[TcpListener] | None:
    """The listening TCP sockets as /proc/net/tcp and tcp6 print them (the kernel walks every
    connection of the host to print them: sock_diag is preferred)."""
    found: list[TcpListener] = []
    for family, table in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        try:
            with open(table, encoding="ascii") as handle:
                lines = handle.read().splitlines()[1:]
        except FileNotFoundError:
            if family == socket.AF_INET6:
                continue  # no IPv6 in this kernel
            return None
        except OSError:
            return None
        found.extend(_proc_line(family, line.split()) for line in lines
                     if len(line.split()) > 9 and line.split()[3] == _TCP_LISTEN_HEX)
    return found


def _proc_line(family: int, fields: list[str]) -> TcpListener:
    address, _, port = fields[1].partition(":")
    # Each 32-bit word is printed as the host holds it: packed back natively, it is the
    # address in network order.
    raw = b"".join(struct.pack("=I", int(address[i:i + 8], 16))
                   for i in range(0, len(address), 8))
    return TcpListener(family, socket.inet_ntop(family, raw), int(port, 16), int(fields[9]))


def socket_inodes(pid: int) -> frozenset[int] | None:
    """The inodes of the sockets ``pid`` holds open, from its /proc fd links; None where they
    cannot be read (the process is gone, or is not ours)."""
    fds = socket_fds(pid)
    return None if fds is None else frozenset(fds)


def socket_fds(pid: int) -> dict[int, int] | None:
    """The sockets ``pid`` holds open, their inodes by the descriptor that holds each (the
    lowest where several do), from its /proc fd links; None where they cannot be read."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    found: dict[int, int] = {}
    for fd in names:
        with contextlib.suppress(OSError, ValueError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inode, number = int(target[8:-1]), int(fd)
                found[inode] = min(number, found.get(inode, number))
    return found


def attributed(found: Iterable[TcpListener], pid: int) -> list[Listener] | None:
    """Quick-read listeners, those ``pid`` holds marked as its own (the others with no pid);
    None when its descriptors cannot be read. ReadyWatch (runtime/observe/readywatch.py)
    remembers who holds which, to read no descriptors again."""
    found = list(found)
    own = socket_inodes(pid)
    if own is None:
        return None
    return [as_listener(ln, pid if ln.inode in own else None) for ln in found]


def as_listener(found: TcpListener, pid: int | None) -> Listener:
    """A quick-read listener as a Listener, held by ``pid``."""
    return Listener("ipv4" if found.family == socket.AF_INET else "ipv6", found.address,
                    found.port, pid)


def by_port(found: Sequence[TcpListener] | None) -> dict[int, list[TcpListener]] | None:
    """Quick-read listeners indexed by port (for checking many tunnels against one read)."""
    if found is None:
        return None
    index: dict[int, list[TcpListener]] = {}
    for listener in found:
        index.setdefault(listener.port, []).append(listener)
    return index


def listening_sockets(pid: int | None = None) -> list[Listener]:
    """Every listening TCP socket (IPv4 and IPv6) and every bound unix stream socket, with
    its owner: one psutil scan of every process.

    Callers that check many tunnels share one result instead of scanning per tunnel. With
    ``pid``, only that process's sockets: far cheaper (no walk over every process).
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
