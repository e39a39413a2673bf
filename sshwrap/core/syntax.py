"""Lexical rules for every value that reaches an ssh argv or config: hosts, users, paths, ports."""

from __future__ import annotations

import ipaddress
import re

from sshwrap.core.model import Address, Hop, TcpAddress, UnixAddress

PROFILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HOSTNAME_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]{0,252})")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# Paths: no whitespace, quotes, '%' tokens, '#', ':' (it would split a forward spec) or shell
# metacharacters; '~' only at the start, where ssh expands it.
PATH_RE = re.compile(r"(~|~/|/|\./|\.\./)?[A-Za-z0-9._/+@,=-]*")
TAG_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
OPTION_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
OPTION_VALUE_RE = re.compile(r"[A-Za-z0-9._,+@:/~*=-]{1,512}")
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")

# Recognised so that they can be refused unless a forward says public = true; nothing binds here.
WILDCARD_BINDS = frozenset({"*", "0.0.0.0", "::"})  # noqa: S104


class SyntaxProblem(ValueError):
    """A value is malformed; the message says how (the caller adds file and key)."""


def check_host(value: str, what: str = "host") -> str:
    """A DNS name, an IPv4 address or an IPv6 address (without brackets)."""
    if not value:
        raise SyntaxProblem(f"{what} is empty")
    if value.startswith("-"):
        raise SyntaxProblem(f"{what} {value!r} starts with '-' (it would be read as an option)")
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise SyntaxProblem(f"{what} {value!r} is not a valid IPv6 address") from None
        return value
    if not HOSTNAME_RE.fullmatch(value):
        raise SyntaxProblem(
            f"{what} {value!r} may hold only letters, digits, '.', '-' and '_' "
            "(no whitespace, shell metacharacters or % tokens)"
        )
    if _NUMERIC_LABELS_RE.fullmatch(value) and not _is_dotted_quad(value):
        # inet_aton reads "0", "127.1" or "0x7f000001" as IPv4 addresses; ssh would connect
        # somewhere other than the text suggests (host "0" is 0.0.0.0, this machine).
        raise SyntaxProblem(
            f"{what} {value!r} would be read as a shorthand IPv4 address; write all four "
            "parts in decimal, as 127.0.0.1"
        )
    return value


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
    if value.startswith("-"):
        raise SyntaxProblem(f"user {value!r} starts with '-' (it would be read as an option)")
    if not USER_RE.fullmatch(value):
        raise SyntaxProblem(
            f"user {value!r} may hold only letters, digits, '.', '-' and '_'"
        )
    return value


def check_path(value: str, what: str = "path") -> str:
    if not value:
        raise SyntaxProblem(f"{what} is empty")
    if value.startswith("-"):
        raise SyntaxProblem(f"{what} {value!r} starts with '-' (it would be read as an option)")
    if not PATH_RE.fullmatch(value) or "~" in value[1:]:
        raise SyntaxProblem(
            f"{what} {value!r} holds a character sshwrap will not pass to ssh "
            "(whitespace, quotes, ':', '%', '#', '$' or another shell metacharacter)"
        )
    return value


def check_port(value: object, what: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SyntaxProblem(f"{what} must be a number from 1 to 65535")
    if isinstance(value, str):
        if not value.isdigit():
            raise SyntaxProblem(f"{what} {value!r} is not a number")
        value = int(value)
    if not 1 <= value <= 65535:
        raise SyntaxProblem(f"{what} {value} is outside 1-65535")
    return value


def split_host_port(text: str) -> tuple[str | None, str]:
    """Split ``host:port``, ``[v6]:port`` or ``port`` into (host, port text)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise SyntaxProblem(f"{text!r}: expected [ipv6-address]:port")
        return text[1:close], text[close + 2 :]
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    if ":" in text:
        raise SyntaxProblem(f"{text!r}: write an IPv6 address in brackets, as [::1]:port")
    return None, text


def is_unix_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~/"))


def parse_listen(value: object) -> Address:
    """A forward's ``listen``: a port, ``addr:port``, ``[v6]:port`` or a unix-socket path."""
    if isinstance(value, int) and not isinstance(value, bool):
        return TcpAddress(None, check_port(value))
    if not isinstance(value, str):
        raise SyntaxProblem("must be a port number or a string such as '127.0.0.1:8080'")
    if is_unix_path(value):
        return UnixAddress(check_path(value, "socket path"))
    host, port = split_host_port(value)
    if host is not None:
        host = check_bind_host(host)
    return TcpAddress(host, check_port(port))


def parse_target(value: object) -> Address:
    """A forward's ``to``: ``host:port``, ``[v6]:port`` or a unix-socket path."""
    if not isinstance(value, str):
        raise SyntaxProblem("must be a string such as 'db.internal:3306'")
    if is_unix_path(value):
        return UnixAddress(check_path(value, "socket path"))
    host, port = split_host_port(value)
    if host is None:
        raise SyntaxProblem(f"{value!r} needs a host, as host:port")
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
        host, port_text = split_host_port(text)
        if host is None:
            raise SyntaxProblem(f"{text!r} is not [user@]host[:port]")
        port = check_port(port_text, "jump port")
        text = host
    return Hop(host=check_host(text, "jump host"), user=user, port=port)


def check_option_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise SyntaxProblem("must be a string, a number or a boolean")
    if not OPTION_VALUE_RE.fullmatch(value):
        raise SyntaxProblem(
            f"value {value!r} for {name} holds a character sshwrap will not pass to ssh "
            "(whitespace, quotes, '%', '#', newlines and shell metacharacters are refused)"
        )
    return value
