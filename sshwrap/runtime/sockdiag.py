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
#: inet_diag_msg: family, state, timer, retransmits; inet_diag_sockid (ports big-endian);
#: expires, read queue, write queue, uid, inode.
_MESSAGE = struct.Struct("=BBBB2H16s16sI8sIIIII")
_PORT = struct.Struct("!H")


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
                found.append(_listener(data, offset + _HEADER.size))
            offset += (length + 3) & ~3
        if not data:
            return False


def _listener(data: bytes, offset: int) -> TcpListener:
    (family, _state, _timer, _retrans, source_port, _dest_port, source, _dest, _interface,
     _cookie, _expires, _rqueue, _wqueue, _uid, inode) = _MESSAGE.unpack_from(data, offset)
    # The ports were read in host order: swap them back from network order.
    port = _PORT.unpack(struct.pack("=H", source_port))[0]
    raw = source[:4] if family == socket.AF_INET else source
    return TcpListener(family, socket.inet_ntop(family, raw), port, inode)
