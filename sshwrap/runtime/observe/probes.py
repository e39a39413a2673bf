"""Far-end probes through a forward: TCP connect, greeting or a harmless first message in the
service's own protocol (PostgreSQL, Redis, memcached, HTTP, TLS), HTTP CONNECT, SOCKS5."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass

from sshwrap.core.certs import describe_certificate
from sshwrap.core.greetings import (
    ANSWER_LIMIT,
    PORT_PROTOCOLS,
    PRODUCTS,
    describe_greeting,
    first_message,
    parse_answer,
    printable,
)
from sshwrap.core.model import Probe

DEFAULT_TIMEOUT = 3.0
#: How long a TCP probe waits for an immediate close: ssh accepts every connection on a local
#: forward and closes it at once when the tunnel host cannot open the channel to the target.
TCP_SETTLE = 0.5

SOCKS_REPLIES = {
    0: "succeeded",
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}

#: An endpoint is a TCP (host, port) or a unix socket path.
Endpoint = tuple[str, int] | str


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    #: Nothing came from the far end: through a local forward, ssh's log decides whether the
    #: tunnel host could not reach it ("open failed") or it is a service that keeps quiet.
    silent: bool = False


def _describe(endpoint: Endpoint) -> str:
    if isinstance(endpoint, str):
        return endpoint
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    if isinstance(endpoint, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint)
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection(endpoint, timeout=timeout)


def _recv_some(sock: socket.socket, limit: int, timeout: float) -> bytes | None:
    """Up to ``limit`` bytes; b"" when the peer closed, None when nothing came in time."""
    sock.settimeout(timeout)
    try:
        return sock.recv(limit)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""


def _recv_line(sock: socket.socket, timeout: float, limit: int = 512) -> bytes:
    data = b""
    sock.settimeout(timeout)
    while b"\n" not in data and len(data) < limit:
        chunk = sock.recv(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r")


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed by the far end")
        data += chunk
    return data


def probe_tcp(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT,
              settle: float = TCP_SETTLE) -> ProbeResult:
    """Connect, then make sure the far end did not close the connection straight away."""
    where = _describe(endpoint)
    try:
        with _connect(endpoint, timeout) as sock:
            data = _recv_some(sock, 1, settle)
    except OSError as exc:
        return ProbeResult(False, f"cannot connect to {where}: {exc.strerror or exc}")
    if data == b"":
        return ProbeResult(False, f"{where} accepted, then closed at once", silent=True)
    return ProbeResult(True, f"connected to {where}", silent=not data)


#: How long the banner probe waits for a greeting before it may speak first; a slow greeting
#: still counts as the answer.
GREETING_WAIT = 1.0
_QUIET = "connected; the service did not speak first"
_MESSAGE_NAMES = {Probe.POSTGRESQL: "SSLRequest", Probe.REDIS: "HELLO",
                  Probe.MEMCACHED: "version request", Probe.HTTP: "HEAD request",
                  Probe.TLS: "ClientHello"}


def probe_banner(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT,
                 wait: float = GREETING_WAIT, *, port: int | None = None,
                 server_name: str = "") -> ProbeResult:
    """Read what the service says first (SSH, SMTP, IMAP, POP3, FTP, MySQL...). A service that
    waits for the client is asked in the protocol of its well-known ``port`` (PostgreSQL,
    Redis, memcached, HTTP, TLS); any other quiet service passes as connected."""
    where = _describe(endpoint)
    protocol = PORT_PROTOCOLS.get(port) if port is not None else None
    try:
        with _connect(endpoint, timeout) as sock:
            data = _recv_some(sock, 512, wait)
            if data is None and protocol is not None:
                return _ask(sock, protocol, where, timeout, server_name, declared=False)
    except OSError as exc:
        return ProbeResult(False, f"cannot connect to {where}: {exc.strerror or exc}")
    if data is None:
        return ProbeResult(True, _QUIET, silent=True)
    if not data:
        return ProbeResult(False, f"{where} accepted, then closed without a greeting",
                           silent=True)
    return ProbeResult(True, f"greeting: {describe_greeting(data)}")


def probe_service(endpoint: Endpoint, protocol: Probe, timeout: float = DEFAULT_TIMEOUT,
                  server_name: str = "") -> ProbeResult:
    """Ask a service declared to speak ``protocol`` (the forward's ``probe``) in that protocol."""
    where = _describe(endpoint)
    try:
        with _connect(endpoint, timeout) as sock:
            return _ask(sock, protocol, where, timeout, server_name, declared=True)
    except OSError as exc:
        return ProbeResult(False, f"cannot connect to {where}: {exc.strerror or exc}")


def _ask(sock: socket.socket, protocol: Probe, where: str, timeout: float, server_name: str,
         *, declared: bool) -> ProbeResult:
    """Send ``protocol``'s harmless first message and read the answer. Only a ``declared``
    protocol fails for an answer in another one, or for none: a port's usual protocol is a
    guess, and a service that does not speak it is still connected."""
    asked = f"a {PRODUCTS[protocol]} {_MESSAGE_NAMES[protocol]}"
    if protocol is Probe.TLS:
        return _tls(sock, where, timeout, server_name, asked, declared=declared)
    sock.sendall(first_message(protocol, host=server_name or "localhost"))
    data, closed = _read_answer(sock, protocol, timeout)
    if not data:
        what = "closed the connection" if closed else f"sent nothing within {timeout:g} s"
        if declared:
            return ProbeResult(False, f"{where} {what} on {asked}", silent=True)
        return ProbeResult(True, f"{_QUIET}, and {what} on {asked}", silent=True)
    if protocol is Probe.POSTGRESQL and data == b"S":
        return _tls(sock, where, timeout, server_name, "", declared=True, product="PostgreSQL")
    return _answered(protocol, data, where, asked, declared=declared)


def _answered(protocol: Probe, data: bytes, where: str, asked: str, *,
              declared: bool) -> ProbeResult:
    answer = parse_answer(protocol, data, closed=True)
    if answer is not None and answer.known:
        return ProbeResult(True, answer.text)
    shown = answer.text if answer is not None else describe_greeting(data)
    if declared:
        return ProbeResult(False, f"{where} answered {asked} with {shown}: not "
                                  f"{PRODUCTS[protocol]}")
    return ProbeResult(True, f"answered {asked} with: {shown}")


def _read_answer(sock: socket.socket, protocol: Probe, timeout: float) -> tuple[bytes, bool]:
    """What came until the answer is whole, and whether the far end closed."""
    data = b""
    deadline = time.monotonic() + timeout
    while parse_answer(protocol, data) is None:
        chunk = _recv_some(sock, ANSWER_LIMIT - len(data), max(0.01, deadline - time.monotonic()))
        if chunk is None:
            return data, False
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _tls(sock: socket.socket, where: str, timeout: float, server_name: str, asked: str, *,
         declared: bool, product: str = "") -> ProbeResult:
    """A TLS handshake: its version and the certificate's names (``product`` asked first)."""
    from sshwrap.runtime.observe.tlsprobe import handshake

    prefix = f"{product}, " if product else ""
    try:
        version, certificate = handshake(sock, server_name, timeout)
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        if declared:
            return ProbeResult(False, f"{prefix}TLS handshake with {where} failed: {reason}")
        return ProbeResult(True, f"answered {asked}, but not with TLS ({reason})")
    except (ConnectionError, TimeoutError) as exc:
        what = "closed the connection" if isinstance(exc, ConnectionError) else \
            f"sent nothing within {timeout:g} s"
        if declared:
            return ProbeResult(False, f"{prefix}{where} {what} during the TLS handshake",
                               silent=not product)
        return ProbeResult(True, f"{_QUIET}, and {what} on {asked}", silent=True)
    shown = describe_certificate(certificate) if certificate else "no certificate"
    return ProbeResult(True, f"{prefix}{version} ({shown})")


def probe_http(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT, host_header: str = "",
               path: str = "/") -> ProbeResult:
    """Send a minimal ``HEAD`` request; any HTTP status line means the far end answers, and
    its ``Server`` header says which server it is."""
    where = _describe(endpoint)
    header = host_header or (endpoint[0] if isinstance(endpoint, tuple) else "localhost")
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(first_message(Probe.HTTP, header, path))
            data, closed = _read_answer(sock, Probe.HTTP, timeout)
    except OSError as exc:
        return ProbeResult(False, f"HTTP request to {where} failed: {exc.strerror or exc}")
    if not data:
        if closed:
            return ProbeResult(False, f"{where} closed the connection on an HTTP request",
                               silent=True)
        return ProbeResult(False, f"{where} did not answer the HTTP request within {timeout:g} s",
                           silent=True)
    answer = parse_answer(Probe.HTTP, data, closed=True)
    if answer is None or not answer.known:
        shown = printable(data.split(b"\n", 1)[0].rstrip(b"\r"))
        return ProbeResult(False, f"{where} answered with {shown}, not HTTP")
    return ProbeResult(True, answer.text)


def probe_http_connect(endpoint: Endpoint, target: tuple[str, int],
                       timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Ask the HTTP proxy at the far end to ``CONNECT`` to ``target``; any 2xx is success."""
    where = _describe(endpoint)
    target_text = _describe(target)
    request = (f"CONNECT {target_text} HTTP/1.1\r\nHost: {target_text}\r\n"
               "User-Agent: sshwrap-check\r\n\r\n").encode()
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(request)
            line = _recv_line(sock, timeout)
    except TimeoutError:
        return ProbeResult(False, f"HTTP proxy {where} did not answer within {timeout:g} s")
    except OSError as exc:
        return ProbeResult(False, f"CONNECT {target_text} via {where} failed: "
                                  f"{exc.strerror or exc}")
    if not line.startswith(b"HTTP/"):
        shown = describe_greeting(line) if line else "nothing"
        return ProbeResult(False, f"{where} answered CONNECT with {shown}, not HTTP")
    status = line.split(b" ", 2)
    ok = len(status) > 1 and status[1].startswith(b"2")
    return ProbeResult(ok, f"CONNECT {target_text} via {where}: {printable(line)}")


def _socks_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        encoded = host.encode("idna")
        return b"\x03" + bytes([len(encoded)]) + encoded
    return (b"\x01" if address.version == 4 else b"\x04") + address.packed


def probe_socks(endpoint: Endpoint, target: tuple[str, int],
                timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """A SOCKS5 greeting (no authentication) and a CONNECT to ``target``."""
    where = _describe(endpoint)
    target_text = _describe(target)
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(b"\x05\x01\x00")
            greeting = _recv_exact(sock, 2)
            if greeting[0] != 5 or greeting[1] != 0:
                return ProbeResult(False, f"{where} is not a SOCKS5 proxy without authentication "
                                          f"(answered {greeting.hex()})")
            host, port = target
            sock.sendall(b"\x05\x01\x00" + _socks_address(host) + port.to_bytes(2, "big"))
            reply = _recv_exact(sock, 2)
    except TimeoutError:
        return ProbeResult(False, f"SOCKS proxy {where} did not answer within {timeout:g} s")
    except OSError as exc:
        return ProbeResult(False, f"SOCKS handshake with {where} failed: {exc.strerror or exc}"
                                  f" (the tunnel host may not reach {target_text})")
    code = reply[1]
    meaning = SOCKS_REPLIES.get(code, f"reply code {code}")
    if code != 0:
        return ProbeResult(False, f"CONNECT {target_text} via {where}: {meaning} (code {code})")
    return ProbeResult(True, f"CONNECT {target_text} via {where}: succeeded")


def run_probe(probe: Probe, endpoint: Endpoint, *, socks_target: tuple[str, int] | None = None,
              proxy_target: tuple[str, int] | None = None, service: tuple[str, int] | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Dispatch on the forward's ``probe``; a SOCKS probe needs a target to CONNECT to, and an
    HTTP probe with ``proxy_target`` asks an HTTP proxy to CONNECT there. ``service`` is the
    host and port the forward leads to: the port chooses what a quiet service is asked, the
    host is the name given to HTTP and TLS servers."""
    name, port = service if service is not None else ("", None)
    if probe is Probe.BANNER:
        return probe_banner(endpoint, timeout, port=port, server_name=name)
    if probe is Probe.HTTP and proxy_target is None:
        return probe_http(endpoint, timeout, host_header=name)
    if probe is Probe.HTTP and proxy_target is not None:
        return probe_http_connect(endpoint, proxy_target, timeout)
    if probe is Probe.SOCKS:
        return probe_socks(endpoint, socks_target, timeout) if socks_target is not None else \
            ProbeResult(False, "a SOCKS probe needs a target to CONNECT to")
    if probe is Probe.TCP:
        return probe_tcp(endpoint, timeout)
    return probe_service(endpoint, probe, timeout, server_name=name)
