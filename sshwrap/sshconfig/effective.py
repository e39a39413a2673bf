"""Read ``ssh -G`` output: effective options and forwards in a form that can be compared."""

from __future__ import annotations

from dataclasses import dataclass

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.model import Address, ForwardType, Profile, UnixAddress

FORWARD_KEYWORDS = {
    "localforward": ForwardType.LOCAL,
    "remoteforward": ForwardType.REMOTE,
    "dynamicforward": ForwardType.DYNAMIC,
}


@dataclass(frozen=True)
class Endpoint:
    """One side of a forward as ssh prints it: host (None when absent) and port, or a path."""

    host: str | None
    port: int | None = None
    path: str | None = None

    def render(self) -> str:
        if self.path is not None:
            return self.path
        if self.host is None:
            return str(self.port)
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SeenForward:
    """A forward as ``ssh -G`` reports it."""

    type: ForwardType
    listen: Endpoint
    to: Endpoint | None

    def describe(self) -> str:
        target = self.to.render() if self.to is not None else "SOCKS"
        return f"{self.type.value} {self.listen.render()} -> {target}"


def parse_endpoint(text: str) -> Endpoint:
    """``[host]:port``, ``host:port``, ``port`` or a unix-socket path."""
    if text.startswith("["):
        close = text.find("]")
        return Endpoint(text[1:close], _port(text[close + 2:]))
    if text.startswith(("/", "./", "../", "~")):
        return Endpoint(None, path=text)
    if text.count(":") == 1:
        host, port = text.split(":")
        return Endpoint(host or None, _port(port))
    return Endpoint(None, _port(text))


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _endpoint(address: Address) -> Endpoint:
    if isinstance(address, UnixAddress):
        return Endpoint(None, path=address.path)
    return Endpoint(address.host, address.port)


def parse_dump(text: str) -> dict[str, list[str]]:
    """``ssh -G`` output as keyword (lowercase) -> values, in order."""
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            options.setdefault(key.lower(), []).append(value)
    return options


def seen_forwards(options: dict[str, list[str]]) -> list[SeenForward]:
    """Every forward in an ``ssh -G`` dump."""
    found: list[SeenForward] = []
    for key, kind in FORWARD_KEYWORDS.items():
        for value in options.get(key, []):
            parts = value.split()
            listen = parse_endpoint(parts[0]) if parts else Endpoint(None)
            to = parse_endpoint(parts[1]) if len(parts) > 1 else None
            found.append(SeenForward(kind, listen, to))
    return found


def expected_forwards(profile: Profile, facts: HostFacts) -> list[SeenForward]:
    """The forwards ``ssh -G`` must show for the profile's compiled Host block."""
    return [
        SeenForward(f.type, _endpoint(f.listen), None if f.to is None else _endpoint(f.to))
        for f in expanded_forwards(profile, facts)
    ]


def missing_forwards(profile: Profile, facts: HostFacts,
                     options: dict[str, list[str]]) -> list[SeenForward]:
    """Forwards of the profile that ``ssh -G`` does not show."""
    seen = set(seen_forwards(options))
    return [f for f in expected_forwards(profile, facts) if f not in seen]


def first(options: dict[str, list[str]], key: str) -> str | None:
    values = options.get(key)
    return values[0] if values else None


def loopback_form(forward: SeenForward) -> SeenForward:
    """The forward with every loopback or absent listen host written as None, so that a bare
    port, ``localhost:P`` and the explicit 127.0.0.1/[::1] pair compare equal."""
    listen = forward.listen
    if listen.path is None and (listen.host is None or _is_loopback(listen.host)):
        listen = Endpoint(None, listen.port)
    return SeenForward(forward.type, listen, forward.to)


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "ip6-localhost") or host.startswith("127.")

