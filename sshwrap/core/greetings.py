"""What services say: greetings, answers to a harmless first message, as readable text (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from sshwrap.core.model import Probe

#: Protocols in which the client speaks first, and the probe that asks each of them.
CLIENT_FIRST = (Probe.POSTGRESQL, Probe.REDIS, Probe.MEMCACHED, Probe.HTTP, Probe.TLS)
#: Their well-known ports: a ``banner`` probe met with silence asks in the port's protocol.
PORT_PROTOCOLS = {
    5432: Probe.POSTGRESQL, 6379: Probe.REDIS, 26379: Probe.REDIS, 11211: Probe.MEMCACHED,
    80: Probe.HTTP, 8000: Probe.HTTP, 8008: Probe.HTTP, 8080: Probe.HTTP,
    443: Probe.TLS, 465: Probe.TLS, 636: Probe.TLS, 853: Probe.TLS, 993: Probe.TLS,
    995: Probe.TLS, 6443: Probe.TLS, 8443: Probe.TLS, 9443: Probe.TLS,
}
#: The product each protocol names in a report.
PRODUCTS = {Probe.POSTGRESQL: "PostgreSQL", Probe.REDIS: "Redis", Probe.MEMCACHED: "memcached",
            Probe.HTTP: "HTTP", Probe.TLS: "TLS"}
#: PostgreSQL's SSLRequest: length 8, code 1234/5679. The server answers one byte and, when the
#: client then hangs up, logs nothing (a StartupMessage would log a failed login).
POSTGRES_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
#: ``HELLO 2`` in RESP: Redis 6+ and Valkey name themselves and their version without a login
#: (RESP2 kept); a server with a password answers -NOAUTH, an older one -ERR: both are Redis.
REDIS_HELLO = b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"
MEMCACHED_VERSION = b"version\r\n"
#: How much of an answer is read at most.
ANSWER_LIMIT = 8192


def first_message(probe: Probe, host: str = "localhost", path: str = "/") -> bytes:
    """The harmless first message of ``probe``'s protocol (not TLS: its hello is the ssl
    module's)."""
    if probe is Probe.POSTGRESQL:
        return POSTGRES_SSL_REQUEST
    if probe is Probe.REDIS:
        return REDIS_HELLO
    if probe is Probe.MEMCACHED:
        return MEMCACHED_VERSION
    if probe is Probe.HTTP:
        return (f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sshwrap-check\r\n"
                "Connection: close\r\n\r\n").encode()
    raise ValueError(f"no first message for probe {probe.value}")


@dataclass(frozen=True)
class Answer:
    """What a service answered: ``known`` when it is the protocol asked, with what it said."""

    known: bool
    text: str


def printable(data: bytes, limit: int = 60) -> str:
    """Bytes from the network as one short line: never a control character."""
    text = data.decode("utf-8", "replace").strip()
    text = "".join(ch if ch.isprintable() else "." for ch in text)
    return text[:limit] + ("..." if len(text) > limit else "")


def _line(data: bytes) -> bytes | None:
    """The first line, once it is whole."""
    if b"\n" not in data:
        return None
    return data.split(b"\n", 1)[0].rstrip(b"\r")


def _other(data: bytes) -> Answer:
    return Answer(False, describe_greeting(data))


def postgres_answer(data: bytes) -> Answer | None:
    """The one-byte answer to an SSLRequest (``S``: TLS on; ``N``: off), or an error."""
    if not data:
        return None
    if data[:1] == b"S" and len(data) == 1:
        return Answer(True, "PostgreSQL, offers TLS")
    if data[:1] == b"N" and len(data) == 1:
        return Answer(True, "PostgreSQL (TLS off)")
    if data[:1] == b"E" and len(data) >= 5:
        # An ErrorResponse: fields of a type byte and a C string; 'M' is the message.
        fields = data[5:5 + int.from_bytes(data[1:5], "big")].split(b"\0")
        message = next((f[1:] for f in fields if f[:1] == b"M"), b"")
        if message:
            return Answer(True, f"PostgreSQL error: {printable(message, 100)}")
    return _other(data)


class _Incomplete(Exception):
    """More bytes are needed."""


def _resp(data: bytes, pos: int = 0, depth: int = 0) -> tuple[object, int]:
    """One RESP2 value at ``pos``: bytes for strings and integers, a list for an array."""
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, head = data[pos:pos + 1], data[pos + 1:end]
    if kind in (b"+", b"-", b":"):
        return head, end + 2
    size = int(head)
    if kind == b"$":
        if size < 0:
            return b"", end + 2
        if len(data) < end + 2 + size + 2:
            raise _Incomplete
        return data[end + 2:end + 2 + size], end + 2 + size + 2
    if kind == b"*" and depth < 4:
        items: list[object] = []
        pos = end + 2
        for _ in range(max(size, 0)):
            item, pos = _resp(data, pos, depth + 1)
            items.append(item)
        return items, pos
    raise ValueError("not RESP")


#: Redis's one-line answers to HELLO that still say it is Redis.
_REDIS_LINES = ((b"-NOAUTH", "Redis (needs a login to say its version)"),
                (b"-ERR unknown command", "Redis (before 6: no HELLO)"))


def _redis_hello(data: bytes) -> Answer | None:
    """The map ``HELLO 2`` answers with, as ``Redis 7.0.15`` (``Valkey 8.0.1``)."""
    try:
        items, _ = _resp(data)
    except _Incomplete:
        return None
    except ValueError:
        return _other(data)
    pairs = items if isinstance(items, list) else []
    fields = {k: v for k, v in zip(pairs[::2], pairs[1::2], strict=False)
              if isinstance(k, bytes) and isinstance(v, bytes)}
    server = printable(fields.get(b"server", b"redis"), 40)
    product = {"redis": "Redis", "valkey": "Valkey"}.get(server, server)
    return Answer(True, f"{product} {printable(fields.get(b'version', b''), 40)}".strip())


def redis_answer(data: bytes) -> Answer | None:
    """Redis's answer to ``HELLO 2``: its server name and version, or why it would not say."""
    line = _line(data)
    if line is None:
        return None
    if line.startswith(b"*") and line[1:].isdigit():
        return _redis_hello(data)
    said = next((text for prefix, text in _REDIS_LINES if line.startswith(prefix)), None)
    if said is not None:
        return Answer(True, said)
    if line.startswith((b"+", b"-")):
        return Answer(True, f"Redis: {printable(line, 100)}")
    return _other(data)


def memcached_answer(data: bytes) -> Answer | None:
    """``VERSION 1.6.18`` in answer to ``version``."""
    line = _line(data)
    if line is None:
        return None
    if line.startswith(b"VERSION "):
        return Answer(True, f"memcached {printable(line[8:], 40)}")
    return _other(data)


def http_answer(data: bytes) -> Answer | None:
    """The status line, and the ``Server`` header where the server sends one."""
    if b"\r\n\r\n" not in data and b"\n\n" not in data:
        # The status line alone is enough when the server closes before a blank line.
        return None
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")
    if not head[0].startswith(b"HTTP/"):
        return _other(data)
    status = printable(head[0], 60)
    server = next((line.split(b":", 1)[1] for line in head[1:]
                   if line.lower().startswith(b"server:")), b"")
    return Answer(True, f"{status} ({printable(server, 60)})" if server.strip() else status)


def parse_answer(probe: Probe, data: bytes, closed: bool = False) -> Answer | None:
    """``probe``'s reading of ``data``: None while more may come; once ``closed`` (or at the
    size limit), whatever came is read as it is."""
    parser = {Probe.POSTGRESQL: postgres_answer, Probe.REDIS: redis_answer,
              Probe.MEMCACHED: memcached_answer, Probe.HTTP: http_answer}[probe]
    answer = parser(data)
    if answer is None and data and (closed or len(data) >= ANSWER_LIMIT):
        if probe is Probe.HTTP and data.startswith(b"HTTP/"):
            return Answer(True, printable(data.split(b"\n", 1)[0].rstrip(b"\r"), 60))
        return _other(data)
    return answer


# -- a greeting: what a service that speaks first says --------------------------------------

#: Text first lines of common services, by how they start.
_TEXT_GREETINGS = (b"SSH-", b"220", b"+OK", b"* OK", b"* PREAUTH", b"+PONG", b"-NOAUTH", b"-ERR",
                   b"-DENIED", b"HTTP/", b"421", b"554")


def mysql_greeting(data: bytes) -> str | None:
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
        return f"MySQL error {code}: {printable(message, 100)}"
    return None


def _mostly_text(data: bytes) -> bool:
    if not data:
        return False
    text = data.decode("utf-8", "replace")
    return sum(ch.isprintable() for ch in text) >= 0.9 * len(text)


def describe_greeting(data: bytes) -> str:
    """What a service said first, as readable text; never raw binary."""
    mysql = mysql_greeting(data)
    if mysql is not None:
        return mysql
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if line.startswith(_TEXT_GREETINGS) or _mostly_text(line):
        return printable(line, 100)
    return f"{len(data)} bytes of binary data, starting {data[:8].hex(' ')}"
