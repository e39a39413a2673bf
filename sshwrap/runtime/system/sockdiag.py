"""TCP sockets from the kernel's sock_diag (netlink), as ``ss -ltn`` and ``ss -ti`` see them.

Reading ``/proc/net/tcp`` makes the kernel walk every connection of the host and print it,
milliseconds of CPU per read taken from the ssh handshakes a readiness poll waits on. Asked
for listeners only, sock_diag walks the listening table alone and answers in binary. Asked
for established connections with their ``tcp_info`` (``status``'s live numbers), it answers
what ``ss -ti`` prints, read from the kernel's own counters: no packet is sent.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import NamedTuple, TypeVar

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # the older request (inet_diag_req), which may leave the family open
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_ESTABLISHED = 1
TCP_LISTEN = 10
#: The INET_DIAG_INFO extension (struct tcp_info), asked by its bit, found by its type.
INET_DIAG_INFO = 2

#: nlmsghdr: length, type, flags, sequence, port id.
_HEADER = struct.Struct("=IHHII")
#: inet_diag_req_v2: family, protocol, extensions, pad, states; then inet_diag_sockid
#: (source and destination port, source and destination address, interface, cookie).
_REQUEST = struct.Struct("=BBBBI2H16s16sI8s")
#: inet_diag_req: family, source and destination prefix lengths, extensions; inet_diag_sockid;
#: states, dbs. Family 0 (AF_UNSPEC) asks for both.
_COMPAT_REQUEST = struct.Struct("=BBBB2H16s16sI8sII")
#: inet_diag_msg: family, state, timer, retransmits; inet_diag_sockid: source port
#: (big-endian) at 4, source address at 8; then (after destination, interface, cookie,
#: expires, queues and uid) the inode at 68, of 72 bytes.
_MESSAGE_SIZE = 72
_SOURCE_PORT, _DESTINATION_PORT, _SOURCE, _DESTINATION, _INODE = 4, 6, 8, 24, 68
_INODE_FIELD = struct.Struct("=I")
_Found = TypeVar("_Found")
#: An established socket's two ends, read at once: its family, source and destination port
#: (big-endian, as all of these but the family, which is one byte), then their addresses.
_ENDS = struct.Struct("!B3xHH16s16s")
#: rtattr: length, type. struct tcp_info: tcpi_rtt and tcpi_rttvar (microseconds) at 68.
_ATTRIBUTE = struct.Struct("=HH")
_RTT = struct.Struct("=II")
_RTT_AT = 68


class TcpListener(NamedTuple):
    family: int  # socket.AF_INET or socket.AF_INET6
    address: str
    port: int
    inode: int


class TcpConnection(NamedTuple):
    """One established TCP socket: its two ends, its inode, and the kernel's smoothed
    round-trip time and its variation in microseconds (None where the kernel gave none)."""

    family: int
    local: str
    local_port: int
    remote: str
    remote_port: int
    inode: int
    rtt_us: int | None
    rttvar_us: int | None


def tcp_listeners() -> list[TcpListener] | None:
    """Every listening TCP socket of this network namespace; None when sock_diag cannot be
    used here (runtime/system/listeners.py, its only reader, then reads /proc instead)."""
    return _dump([(SOCK_DIAG_BY_FAMILY,
                   _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN,
                                 0, 0, b"", b"", 0, b""))
                  for family in (socket.AF_INET, socket.AF_INET6)], _listener)


def tcp_connections() -> list[TcpConnection] | None:
    """Every established TCP socket of this network namespace (IPv4 and IPv6) with its
    tcp_info round-trip time; None when sock_diag cannot be used here.

    Established sockets are found by walking the kernel's whole connection hash table (a
    fixed cost, however few there are): asked in the older form, which names no family, the
    kernel walks it once for both families instead of once for each.
    """
    request = _COMPAT_REQUEST.pack(0, 0, 0, 1 << (INET_DIAG_INFO - 1), 0, 0, b"", b"", 0, b"",
                                   1 << TCP_ESTABLISHED, 0)
    return _dump([(TCPDIAG_GETSOCK, request)], _connection)


def _dump(requests: list[tuple[int, bytes]],
          parse: Callable[[bytes, int, int], _Found]) -> list[_Found] | None:
    """Each request's dump (its message type and body), each answer parsed (given the data,
    its offset past the header and its end); None when the kernel cannot answer here."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as conn:
            found: list[_Found] = []
            for sequence, (kind, request) in enumerate(requests, start=1):
                conn.sendall(_HEADER.pack(_HEADER.size + len(request), kind,
                                          NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + request)
                if not _receive(conn, kind, found, parse):
                    return None
            return found
    except (OSError, struct.error):
        return None


def _receive(conn: socket.socket, answer: int, found: list[_Found],
             parse: Callable[[bytes, int, int], _Found]) -> bool:
    """Read one dump's answers (of message type ``answer``) into ``found``; False when the
    kernel answered with an error."""
    while True:
        data = conn.recv(1 << 16)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _flags, _sequence, _port = _HEADER.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return True
            if kind == NLMSG_ERROR or length < _HEADER.size:
                return False
            if kind == answer:
                if length < _HEADER.size + _MESSAGE_SIZE or offset + length > len(data):
                    return False  # cut short: not to be guessed at
                found.append(parse(data, offset + _HEADER.size, offset + length))
            offset += (length + 3) & ~3
        if not data:
            return False


def _listener(data: bytes, offset: int, _end: int) -> TcpListener:
    # Read field by field: a host with hundreds of listeners is read on every status.
    family = data[offset]
    port = int.from_bytes(data[offset + _SOURCE_PORT:offset + _SOURCE_PORT + 2], "big")
    start = offset + _SOURCE
    raw = data[start:start + (4 if family == socket.AF_INET else 16)]
    inode = _INODE_FIELD.unpack_from(data, offset + _INODE)[0]
    return TcpListener(family, socket.inet_ntop(family, raw), port, inode)


def _connection(data: bytes, offset: int, end: int) -> TcpConnection:
    family, local_port, remote_port, local, remote = _ENDS.unpack_from(data, offset)
    size = 4 if family == socket.AF_INET else 16
    rtt: tuple[int, int] | tuple[None, None] = (None, None)
    at = offset + _MESSAGE_SIZE
    while at + _ATTRIBUTE.size <= end:  # the attributes after the message: tcp_info's
        length, kind = _ATTRIBUTE.unpack_from(data, at)
        if length < _ATTRIBUTE.size:
            break
        if kind == INET_DIAG_INFO and length >= _ATTRIBUTE.size + _RTT_AT + _RTT.size:
            rtt = _RTT.unpack_from(data, at + _ATTRIBUTE.size + _RTT_AT)
            break
        at += (length + 3) & ~3
    return TcpConnection(family, socket.inet_ntop(family, local[:size]), local_port,
                         socket.inet_ntop(family, remote[:size]), remote_port,
                         _INODE_FIELD.unpack_from(data, offset + _INODE)[0], *rtt)
