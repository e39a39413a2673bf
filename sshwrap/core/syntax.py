"""One grammar per kind of value that reaches an ssh argv or config: hosts, users, paths, ports."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from sshwrap.core.model import Address, Hop, TcpAddress, UnixAddress
from sshwrap.textsafe import shown

# Every pattern below names its characters explicitly, so each is ASCII only: no fullwidth
# digits, Cyrillic lookalikes or dotless i, which str.isdigit() and friends would let through.
PROFILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: One label of a host name: RFC 1123 letters, digits and inner hyphens, plus '_', which ssh
#: config aliases and some internal names use.
LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
PORT_RE = re.compile(r"[0-9]{1,5}")
# Paths: no whitespace, quotes, '%' tokens, '#', ':' (it would split a forward spec) or shell
# metacharacters; '~' only at the start, where ssh expands it.
PATH_RE = re.compile(r"(~|~/|/|\./|\.\./)?[A-Za-z0-9._/+@,=-]*")
TAG_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
OPTION_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
#: An interface name (at most IFNAMSIZ - 1 characters) or an interface number: an IPv6
#: scope id, and what BindInterface takes.
INTERFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_IPV6_TEXT_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DOTTED_QUAD_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
MAX_HOST_LENGTH = 253
MAX_PATH_LENGTH = 1024
MAX_DESCRIPTION_LENGTH = 200

# Recognised so that they can be refused unless a forward says public = true; nothing binds here.
WILDCARD_BINDS = frozenset({"*", "0.0.0.0", "::"})  # noqa: S104
#: The names that mean loopback on every system sshwrap runs on; any other name may resolve
#: anywhere, whatever it looks like ("127.lan.example" is a name, not an address).
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


class SyntaxProblem(ValueError):
    """A value is malformed; the message says how (the caller adds file and key)."""


class HostKind(StrEnum):
    NAME = "name"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@dataclass(frozen=True)
class ParsedHost:
    """A host value after parsing: its kind, canonical text and, for IPv6, the scope id."""

    kind: HostKind
    text: str
    scope: str | None = None

    @property
    def is_loopback(self) -> bool:
        if self.kind is HostKind.NAME:
            return self.text in LOOPBACK_NAMES
        address = self.text.partition("%")[0]
        if self.kind is HostKind.IPV4:
            return ipaddress.IPv4Address(address) in ipaddress.IPv4Network("127.0.0.0/8")
        return ipaddress.IPv6Address(address) == ipaddress.IPv6Address("::1")


def _leading_dash(value: str, what: str) -> None:
    if value.startswith("-"):
        raise SyntaxProblem(
            f"{what} {shown(value)} starts with '-' (it would be read as an option)")


def _parse_ipv6(value: str, what: str) -> ParsedHost:
    address, percent, scope = value.partition("%")
    if percent and not INTERFACE_RE.fullmatch(scope):
        raise SyntaxProblem(
            f"{what} {shown(value)} has a scope id that is not an interface name or number "
            "(letters, digits, '.', '-', '_', at most 15)")
    try:
        if not _IPV6_TEXT_RE.fullmatch(address):
            raise ValueError(address)
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        raise SyntaxProblem(f"{what} {shown(value)} is not a valid IPv6 address") from None
    if percent and scope.isdigit():
        # A numeric scope is an interface index, and index 0 is no scope at all: ssh reads
        # "fe80::1%0" as "fe80::1", so the canonical text must too (its jump-loop check does).
        scope = str(int(scope)) if int(scope) else ""
    text = str(parsed) + (f"%{scope}" if scope else "")
    return ParsedHost(HostKind.IPV6, text, scope or None)


def parse_host(value: str, what: str = "host") -> ParsedHost:
    """A host name (RFC 1123 labels and '_'), a dotted-quad IPv4 or an IPv6 address."""
    if not value:
        raise SyntaxProblem(f"{what} is empty")
    _leading_dash(value, what)
    if ":" in value:
        return _parse_ipv6(value, what)
    if _DOTTED_QUAD_RE.fullmatch(value) and _is_dotted_quad(value):
        return ParsedHost(HostKind.IPV4, value)
    if _NUMERIC_LABELS_RE.fullmatch(value):
        # inet_aton reads "0", "127.1" or "0x7f000001" as IPv4 addresses; ssh would connect
        # somewhere other than the text suggests (host "0" is 0.0.0.0, this machine).
        raise SyntaxProblem(
            f"{what} {shown(value)} would be read as a shorthand IPv4 address; write all four "
            "parts in decimal, as 127.0.0.1"
        )
    if len(value) > MAX_HOST_LENGTH or not all(LABEL_RE.fullmatch(p) for p in value.split(".")):
        raise SyntaxProblem(
            f"{what} {shown(value)} may hold only ASCII letters, digits, '.', '-' and '_' in "
            "labels of 1-63, at most 253 in all (no whitespace, shell metacharacters or "
            "% tokens)"
        )
    return ParsedHost(HostKind.NAME, value)


def check_host(value: str, what: str = "host") -> str:
    """The canonical text of a host (see ``parse_host``)."""
    return parse_host(value, what).text


def is_loopback_host(host: str | None) -> bool:
    """True for no host (ssh's default is loopback), 127.0.0.0/8, ::1, localhost and
    ip6-localhost; False for every other value, names that merely look like addresses included."""
    if host is None:
        return True
    try:
        return parse_host(host).is_loopback
    except SyntaxProblem:
        return False


_NUMBER = r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)"
_NUMERIC_LABELS_RE = re.compile(rf"{_NUMBER}(?:\.{_NUMBER}){{0,3}}\.?")


def _is_dotted_quad(value: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(value)) == value
    except ValueError:
        return False


def check_bind_host(value: str) -> str:
    """A listen address: a host, or a wildcard (``*``, ``0.0.0.0``, ``::``)."""
    if value in WILDCARD_BINDS:
        return value
    return check_host(value, "bind address")


def check_user(value: str) -> str:
    if not value:
        raise SyntaxProblem("user is empty")
    _leading_dash(value, "user")
    if not USER_RE.fullmatch(value):
        raise SyntaxProblem(
            f"user {shown(value)} may hold only ASCII letters, digits, '.', '-' and '_' "
            "(at most 64)"
        )
    return value


def check_path(value: str, what: str = "path") -> str:
    if not value:
        raise SyntaxProblem(f"{what} is empty")
    _leading_dash(value, what)
    if len(value) > MAX_PATH_LENGTH or not PATH_RE.fullmatch(value) or "~" in value[1:]:
        raise SyntaxProblem(
            f"{what} {shown(value)} holds a character sshwrap will not pass to ssh "
            "(non-ASCII, whitespace, quotes, ':', '%', '#', '$' or another shell metacharacter)"
        )
    return value


def check_port(value: object, what: str = "port") -> int:
    """1-65535, as a number or a string of ASCII digits."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SyntaxProblem(f"{what} must be a number from 1 to 65535")
    if isinstance(value, str):
        if not PORT_RE.fullmatch(value):
            raise SyntaxProblem(f"{what} {shown(value)} is not a number (ASCII digits)")
        value = int(value)
    if not 1 <= value <= 65535:
        raise SyntaxProblem(f"{what} {shown(value)} is outside 1-65535")
    return value


def check_listen_port(value: object) -> int:
    """A forward's listen port: 1-65535, or 0 for a port sshwrap chooses when it starts."""
    if value in (0, "0") and not isinstance(value, bool):
        return 0
    return check_port(value)


def split_host_port(text: str) -> tuple[str | None, str]:
    """Split ``host:port``, ``[v6]:port`` or ``port`` into (host, port text)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise SyntaxProblem(f"{shown(text)}: expected [ipv6-address]:port")
        return text[1:close], text[close + 2 :]
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    if ":" in text:
        raise SyntaxProblem(f"{shown(text)}: write an IPv6 address in brackets, as [::1]:port")
    return None, text


def is_unix_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~/"))


def parse_listen(value: object) -> Address:
    """A forward's ``listen``: a port, ``addr:port``, ``[v6]:port`` or a unix-socket path."""
    if isinstance(value, int) and not isinstance(value, bool):
        return TcpAddress(None, check_listen_port(value))
    if not isinstance(value, str):
        raise SyntaxProblem("must be a port number or a string such as '127.0.0.1:8080'")
    if is_unix_path(value):
        return UnixAddress(check_path(value, "socket path"))
    host, port = split_host_port(value)
    if host is not None:
        host = check_bind_host(host)
    return TcpAddress(host, check_listen_port(port))


def parse_target(value: object) -> Address:
    """A forward's ``to``: ``host:port``, ``[v6]:port`` or a unix-socket path."""
    if not isinstance(value, str):
        raise SyntaxProblem("must be a string such as 'db.internal:3306'")
    if is_unix_path(value):
        return UnixAddress(check_path(value, "socket path"))
    host, port = split_host_port(value)
    if host is None:
        raise SyntaxProblem(f"{shown(value)} needs a host, as host:port")
    return TcpAddress(check_host(host), check_port(port))


def parse_hop(text: str) -> Hop:
    """A jump host, ``[user@]host[:port]`` (IPv6 in brackets when a port follows)."""
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        user = check_user(user)
    port: int | None = None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    elif text.startswith("[") or text.count(":") == 1:
        host_text, port_text = split_host_port(text)
        if host_text is None:
            raise SyntaxProblem(f"{shown(text)} is not [user@]host[:port]")
        port = check_port(port_text, "jump port")
        text = host_text
    parsed = parse_host(text, "jump host")
    if parsed.scope is not None:
        # ssh builds the jump's own command from this text and expands '%' tokens in it.
        raise SyntaxProblem(f"jump host {shown(text)}: ssh cannot reach a jump host by a "
                            "scoped IPv6 address; name it in your ssh config instead")
    return Hop(host=parsed.text, user=user, port=port)


def check_profile_name(value: str) -> str:
    if not PROFILE_NAME_RE.fullmatch(value):
        raise SyntaxProblem(f"profile name {shown(value)} must be letters, digits, '.', '-' or "
                            "'_' (starting with a letter or digit, at most 64), so it is a safe "
                            "ssh Host name")
    return value


def check_description(value: str) -> str:
    # Cc: controls and newlines; Cf: invisible format characters such as bidi overrides,
    # which can make a listing read differently from what it says; Zl/Zp: line breaks.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise SyntaxProblem("may not hold newlines, control or invisible format characters")
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise SyntaxProblem(f"is {len(value)} characters long; at most "
                            f"{MAX_DESCRIPTION_LENGTH}")
    return value


def check_interface(value: str, what: str = "interface") -> str:
    if not INTERFACE_RE.fullmatch(value) or value.startswith("-"):
        raise SyntaxProblem(f"{what} {shown(value)} is not an interface name "
                            "(letters, digits, '.', '-', '_', at most 15)")
    return value
