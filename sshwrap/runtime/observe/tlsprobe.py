"""A TLS handshake over a connected socket without verification: version and certificate."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time

#: How long the close waits for the server to answer the client's close_notify.
CLOSE_WAIT = 0.5


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    return sock.recv(16384)


def handshake(sock: socket.socket, server_name: str, timeout: float) -> tuple[str, bytes | None]:
    """("TLS 1.3", the server's certificate in DER) after a handshake over ``sock`` through a
    memory BIO; ConnectionError when the server closes, TimeoutError, ssl.SSLError. The
    connection is then closed the polite way: the server logs a client that went away."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    name = server_name if server_name and not _is_address(server_name) else None
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
        try:
            chunk = _recv(sock, deadline)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionError("closed the connection during the TLS handshake")
        incoming.write(chunk)
    version = (tls.version() or "TLS").replace("TLSv", "TLS ")
    certificate = tls.getpeercert(binary_form=True)
    _close(sock, tls, outgoing)
    return version, certificate


def _close(sock: socket.socket, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> None:
    """The client's last handshake flight and a close_notify, then read until the server
    closes: closing with its session tickets unread would reset the connection."""
    with contextlib.suppress(ssl.SSLError):  # the server's close_notify is not awaited
        tls.unwrap()
    try:
        if outgoing.pending:
            sock.sendall(outgoing.read())
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + CLOSE_WAIT
        while time.monotonic() < deadline and _recv(sock, deadline):
            pass
    except OSError:
        pass  # the answer is in hand; how the server hangs up does not change it
