"""``status``'s live numbers: each running tunnel's first-hop round-trip time and open connections.

Both come from one sock_diag dump of the host's established TCP sockets per ``status``
(runtime/system/sockdiag.py), the kernel's own figures: no packet is sent to measure anything.

- The round-trip time is the kernel's smoothed RTT (``tcpi_rtt``, what ``ss -ti`` prints as
  ``rtt:``) of the client's connection to its first hop. That connection is the TCP socket
  with the lowest descriptor held by the last process of the client's chain of children (the
  ``ssh -W`` that ProxyJump starts for the first jump host; plink's ``-proxycmd`` likewise),
  else by the client itself, leaving out connections a forward accepted. On a shared
  connection the client is its master. Once found, a socket is known by its inode for as
  long as it lives: no descriptor is read again.
- A local or dynamic forward's open connections are the established sockets whose local end
  is its listening address: the connections its listener accepted. A remote forward's are
  the client's own connections to the forward's target (``to``), by address when ``to`` names
  an address, ``localhost`` as any loopback address, any other name by its port alone; the
  client's descriptors are read only when such a connection exists. A forward on a unix
  socket is not counted (None).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence

from sshwrap.core.model import TcpAddress
from sshwrap.core.syntax import SyntaxProblem, parse_listen, parse_target
from sshwrap.runtime.observe.forwards import ip_of
from sshwrap.runtime.observe.results import ForwardStatus, TunnelState, TunnelStatus
from sshwrap.runtime.observe.statusmemory import FirstHops
from sshwrap.runtime.system import sockdiag
from sshwrap.runtime.system.listeners import socket_fds
from sshwrap.runtime.system.sockdiag import TcpConnection

#: How deep a chain of jump processes is followed (one process per jump host, at most).
_CHAIN_MAX = 16
_RUNNING = frozenset({TunnelState.UP, TunnelState.STARTING})
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def with_numbers(rows: Sequence[TunnelStatus],
                 read: Callable[[], list[TcpConnection] | None] = sockdiag.tcp_connections,
                 hops: FirstHops | None = None) -> list[TunnelStatus]:
    """The rows, each running tunnel's with its round-trip time and its forwards' open
    connections: one read of the kernel's table for them all, none when none runs.
    ``hops`` keeps the first hops found for the next time (the engine's), else they are
    found again."""
    if not any(_runs(row) for row in rows):
        return list(rows)
    table = Connections(read(), hops)
    return [table.numbered(row) if _runs(row) else row for row in rows]


class TableRead:
    """The kernel's established table, read on a thread of its own from the moment this is
    made: the kernel walks its whole table inside a syscall, the interpreter's lock let go,
    while ``status`` works out its rows; calling it waits for the read (or raises what the
    read raised). That walk is most of what the live numbers cost."""

    def __init__(self, read: Callable[[], list[TcpConnection] | None] = sockdiag.tcp_connections,
                 ) -> None:
        self._found: list[TcpConnection] | None = None
        self._error: BaseException | None = None
        self._read = read
        self._thread = threading.Thread(target=self._run, name="sshwrap-livenums", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._found = self._read()
        except BaseException as error:  # handed to the caller, which owns the outcome
            self._error = error

    def __call__(self) -> list[TcpConnection] | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._found


def _runs(row: TunnelStatus) -> bool:
    return row.state in _RUNNING and row.pid is not None


class Connections:
    """The host's established TCP sockets as one dump gave them, indexed for every row."""

    def __init__(self, found: list[TcpConnection] | None,
                 hops: FirstHops | None = None) -> None:
        self.readable = found is not None
        self.hops = hops if hops is not None else FirstHops()
        self.by_inode = {c.inode: c for c in found or ()}
        self.by_local_port: dict[int, list[TcpConnection]] = {}
        self.by_remote_port: dict[int, list[TcpConnection]] = {}
        for conn in found or ():
            self.by_local_port.setdefault(conn.local_port, []).append(conn)
            self.by_remote_port.setdefault(conn.remote_port, []).append(conn)

    def numbered(self, row: TunnelStatus) -> TunnelStatus:
        """The row with its numbers; as it was where the kernel's table cannot be read."""
        if not self.readable or row.pid is None:
            return row
        listening = [_listen(f.listen) for f in row.forwards if f.type != "remote"]
        accepted = {c.inode for address in listening if address is not None
                    for c in self.by_local_port.get(address.port, ())
                    if _bound_to(address.host, c)}
        hop = self.first_hop(row.pid, accepted)
        rtt = self.by_inode[hop] if hop is not None else None
        forwards = tuple(ForwardStatus(f.type, f.listen, f.to, f.healthy, f.detail,
                                       self._open(row.pid, f, hop)) for f in row.forwards)
        # Built from the row's fields, not by dataclasses.replace: a hundred rows took
        # milliseconds that way.
        return TunnelStatus(**{**vars(row), "forwards": forwards,
                               "rtt_ms": _ms(rtt.rtt_us) if rtt is not None else None,
                               "rtt_var_ms": _ms(rtt.rttvar_us) if rtt is not None else None})

    def first_hop(self, pid: int, accepted: set[int]) -> int | None:
        """The inode of the client's connection to its first hop, None where none is seen."""
        known = self.hops.get(pid)
        if known is not None and known in self.by_inode:
            return known
        for holder in reversed(_chain(pid)):
            fds = socket_fds(holder)
            ours = sorted((fd, inode) for inode, fd in (fds or {}).items()
                          if inode in self.by_inode and inode not in accepted)
            if ours:
                self.hops.keep(pid, ours[0][1])
                return ours[0][1]
        return None

    def _open(self, pid: int, forward: ForwardStatus, hop: int | None) -> int | None:
        if forward.type != "remote":
            address = _listen(forward.listen)
            if address is None:
                return None
            return sum(_bound_to(address.host, c)
                       for c in self.by_local_port.get(address.port, ()))
        target = _target(forward.to)
        if target is None or target.host is None:
            return None
        wanted = [c for c in self.by_remote_port.get(target.port, ())
                  if _goes_to(target.host, c) and c.inode != hop]
        if not wanted:
            return 0
        own = socket_fds(pid)
        return None if own is None else sum(c.inode in own for c in wanted)


def _chain(pid: int) -> list[int]:
    """The client, its child, that child's child...: a jump host's ``ssh -W`` chain."""
    chain = [pid]
    while len(chain) < _CHAIN_MAX:
        try:
            with open(f"/proc/{chain[-1]}/task/{chain[-1]}/children", encoding="ascii") as f:
                children = f.read().split()
        except OSError:
            break
        if not children:
            break
        chain.append(int(children[0]))
    return chain


def _ms(microseconds: int | None) -> float | None:
    return None if microseconds is None else microseconds / 1000


# Cached, as forwards.py caches its addresses: every status parses the same few texts again.
@functools.lru_cache(maxsize=1024)
def _listen(listen: str) -> TcpAddress | None:
    with contextlib.suppress(SyntaxProblem, ValueError):
        address = parse_listen(listen)
        return address if isinstance(address, TcpAddress) else None
    return None


@functools.lru_cache(maxsize=1024)
def _target(to: str | None) -> TcpAddress | None:
    if to is None:
        return None
    with contextlib.suppress(SyntaxProblem, ValueError):
        address = parse_target(to)
        return address if isinstance(address, TcpAddress) else None
    return None


def _ip(text: str | None) -> _IP | None:
    address = ip_of(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's IPv4 peer
    return address


def _bound_to(host: str | None, conn: TcpConnection) -> bool:
    """The connection's local end is on a listener bound to ``host`` (its port compared by
    the caller): the address itself, any of a wildcard's family, any for a name."""
    if host == "0.0.0.0":  # noqa: S104 - compared, never bound
        return conn.family == socket.AF_INET
    if host == "::":
        return conn.family == socket.AF_INET6
    wanted = _ip(host)
    return wanted is None or _ip(conn.local) == wanted


def _goes_to(host: str, conn: TcpConnection) -> bool:
    """The connection's far end is ``host`` (its port compared by the caller)."""
    wanted, far = _ip(host), _ip(conn.remote)
    if wanted is not None:
        return far == wanted
    if host.lower() == "localhost":
        return far is not None and far.is_loopback
    return True
