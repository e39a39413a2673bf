"""Listening TCP sockets from the kernel's sock_diag netlink interface, as ``ss -ltn`` reads them.

Reading ``/proc/net/tcp`` makes the kernel walk every connection of the host and print it,
milliseconds of CPU per read taken from the ssh handshakes a readiness poll waits on. Asked
for listeners only, sock_diag walks the listening table alone and answers in binary.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10

#: nlmsghdr: length, type, flags, sequence, port id.
_HEADER = struct.Struct("=IHHII")
#: inet_diag_req_v2: family, protocol, extensions, pad, states; then inet_diag_sockid
#: (source and destination port, source and destination address, interface, cookie).
_REQUEST = struct.Struct("=BBBBI2H16s16sI8s")
#: inet_diag_msg: family, state, timer, retransmits; inet_diag_sockid: source port
#: (big-endian) at 4, source address at 8; then (after destination, interface, cookie,
#: expires, queues and uid) the inode at 68, of 72 bytes.
_MESSAGE_SIZE = 72
_SOURCE_PORT, _SOURCE, _INODE = 4, 8, 68
_INODE_FIELD = struct.Struct("=I")


class TcpListener(NamedTuple):
    family: int  # socket.AF_INET or socket.AF_INET6
    address: str
    port: int
    inode: int


def tcp_listeners() -> list[TcpListener] | None:
    """Every listening TCP socket of this network namespace; None when sock_diag cannot be
    used here (runtime/listeners.py, its only reader, then reads /proc instead)."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as conn:
            found: list[TcpListener] = []
            for sequence, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
                request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN,
                                        0, 0, b"", b"", 0, b"")
                conn.sendall(_HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                          NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + request)
                if not _receive(conn, found):
                    return None
            return found
    except (OSError, struct.error):
        return None


def _receive(conn: socket.socket, found: list[TcpListener]) -> bool:
    """Read one dump's answers into ``found``; False when the kernel answered with an error."""
    while True:
        data = conn.recv(1 << 16)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _flags, _sequence, _port = _HEADER.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return True
            if kind == NLMSG_ERROR or length < _HEADER.size:
                return False
            if kind == SOCK_DIAG_BY_FAMILY:
                if length < _HEADER.size + _MESSAGE_SIZE or offset + length > len(data):
                    return False  # cut short: not to be guessed at
                found.append(_listener(data, offset + _HEADER.size))
            offset += (length + 3) & ~3
        if not data:
            return False


def _listener(data: bytes, offset: int) -> TcpListener:
    # Read field by field: a host with hundreds of listeners is read on every status.
    family = data[offset]
    port = int.from_bytes(data[offset + _SOURCE_PORT:offset + _SOURCE_PORT + 2], "big")
    start = offset + _SOURCE
    raw = data[start:start + (4 if family == socket.AF_INET else 16)]
    inode = _INODE_FIELD.unpack_from(data, offset + _INODE)[0]
    return TcpListener(family, socket.inet_ntop(family, raw), port, inode)
