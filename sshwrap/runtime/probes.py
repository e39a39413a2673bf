"""Far-end probes through a forward: TCP connect, greeting, HTTP status or CONNECT, SOCKS5."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

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


def _printable(data: bytes, limit: int = 60) -> str:
    text = data.decode("utf-8", "replace").strip()
    text = "".join(ch if ch.isprintable() else "." for ch in text)
    return text[:limit] + ("..." if len(text) > limit else "")


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
        return ProbeResult(False, f"{where} accepted, then closed at once: the far end is not "
                                  "reachable through the tunnel")
    return ProbeResult(True, f"connected to {where}")


#: How long the banner probe waits for a greeting before it speaks first (Redis and HTTP
#: servers wait for the client); a slow greeting still counts as the answer.
GREETING_WAIT = 1.0
#: Text first lines of common services, by how they start.
_TEXT_GREETINGS = (b"SSH-", b"220", b"+OK", b"* OK", b"* PREAUTH", b"+PONG", b"-NOAUTH", b"-ERR",
                   b"-DENIED", b"HTTP/", b"421", b"554")


def _mysql_greeting(data: bytes) -> str | None:
    """A MySQL/MariaDB handshake packet (protocol 10), or its error packet, as text."""
    if len(data) < 6:
        return None
    length = int.from_bytes(data[:3], "little")
    # The whole first packet, sequence number 0: anything else is not a MySQL server.
    if length < 3 or len(data) < 4 + length or data[3] != 0:
        return None
    payload = data[4:4 + length]
    if payload[0] == 10 and b"\0" in payload[1:]:
        version = payload[1:payload.index(b"\0", 1)].decode("ascii", "replace")
        # MariaDB puts "5.5.5-" in front of its version for the sake of old clients.
        version = version.removeprefix("5.5.5-")
        if version and all(ch.isprintable() for ch in version):
            return version
    if payload[0] == 0xFF and length >= 3:
        code = int.from_bytes(payload[1:3], "little")
        message = payload[3:].lstrip(b"#")[5:] if payload[3:4] == b"#" else payload[3:]
        return f"MySQL error {code}: {_printable(message, 100)}"
    return None


def describe_greeting(data: bytes) -> str:
    """What a service said first, as readable text; never raw binary."""
    mysql = _mysql_greeting(data)
    if mysql is not None:
        return mysql
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if line.startswith(_TEXT_GREETINGS) or _mostly_text(line):
        return _printable(line, 100)
    return f"{len(data)} bytes of binary data, starting {data[:8].hex(' ')}"


def _mostly_text(data: bytes) -> bool:
    if not data:
        return False
    text = data.decode("utf-8", "replace")
    printable = sum(ch.isprintable() for ch in text)
    return printable >= 0.9 * len(text)


def probe_banner(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT,
                 wait: float = GREETING_WAIT) -> ProbeResult:
    """Connect and read what the service says first (SSH, SMTP, IMAP, POP3, FTP, MySQL...);
    a service that waits for the client (Redis) is sent ``PING`` and its answer read."""
    where = _describe(endpoint)
    try:
        with _connect(endpoint, timeout) as sock:
            data = _recv_some(sock, 512, wait)
            if data is None:
                sock.sendall(b"PING\r\n")
                data = _recv_some(sock, 512, timeout)
    except OSError as exc:
        return ProbeResult(False, f"cannot connect to {where}: {exc.strerror or exc}")
    if data is None:
        return ProbeResult(False, f"{where} sent nothing within {wait + timeout:g} s, even "
                                  "after a PING")
    if not data:
        return ProbeResult(False, f"{where} accepted, then closed without a greeting: the far "
                                  "end is not reachable through the tunnel")
    return ProbeResult(True, f"greeting: {describe_greeting(data)}")


def probe_http(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT, host_header: str = "",
               path: str = "/") -> ProbeResult:
    """Send a minimal ``HEAD`` request; any HTTP status line means the far end answers."""
    where = _describe(endpoint)
    header = host_header or (endpoint[0] if isinstance(endpoint, tuple) else "localhost")
    request = (f"HEAD {path} HTTP/1.1\r\nHost: {header}\r\nUser-Agent: sshwrap-check\r\n"
               "Connection: close\r\n\r\n").encode()
    try:
        with _connect(endpoint, timeout) as sock:
            sock.sendall(request)
            line = _recv_line(sock, timeout)
    except TimeoutError:
        return ProbeResult(False, f"{where} did not answer the HTTP request within {timeout:g} s")
    except OSError as exc:
        return ProbeResult(False, f"HTTP request to {where} failed: {exc.strerror or exc}")
    if not line.startswith(b"HTTP/"):
        shown = _printable(line) if line else "nothing"
        return ProbeResult(False, f"{where} answered with {shown}, not HTTP")
    return ProbeResult(True, _printable(line))


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
    return ProbeResult(ok, f"CONNECT {target_text} via {where}: {_printable(line)}")


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
              proxy_target: tuple[str, int] | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Dispatch on the forward's ``probe``; a SOCKS probe needs a target to CONNECT to, and an
    HTTP probe with ``proxy_target`` asks an HTTP proxy to CONNECT there."""
    if probe is Probe.BANNER:
        return probe_banner(endpoint, timeout)
    if probe is Probe.HTTP:
        if proxy_target is not None:
            return probe_http_connect(endpoint, proxy_target, timeout)
        return probe_http(endpoint, timeout)
    if probe is Probe.SOCKS:
        if socks_target is None:
            return ProbeResult(False, "a SOCKS probe needs a target to CONNECT to")
        return probe_socks(endpoint, socks_target, timeout)
    return probe_tcp(endpoint, timeout)

