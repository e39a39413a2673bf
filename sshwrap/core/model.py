"""The validated, typed profile model: frozen dataclasses built only by ``core.parse``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ForwardType(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"
    DYNAMIC = "dynamic"


class Probe(StrEnum):
    """How the far end of a forward is checked through the tunnel."""

    TCP = "tcp"
    BANNER = "banner"
    HTTP = "http"
    SOCKS = "socks"
    # Services that wait for the client, asked in their own protocol.
    POSTGRESQL = "postgresql"
    REDIS = "redis"
    MEMCACHED = "memcached"
    TLS = "tls"


class Client(StrEnum):
    SSH = "ssh"
    PLINK = "plink"


class RestartPolicy(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class HostKeyMode(StrEnum):
    STRICT = "strict"
    ACCEPT_NEW = "accept-new"
    PINNED = "pinned"


class AuthMethod(StrEnum):
    KEY = "key"
    PASSWORD = "password"  # noqa: S105 - the name of an auth method, not a secret


#: ServerAliveInterval when the profile does not say; with DEFAULT_ALIVE_COUNT_MAX a dead
#: path is noticed within (count + 1) * interval = 9 s, inside the 10 s promise.
DEFAULT_KEEPALIVE = 3
DEFAULT_ALIVE_COUNT_MAX = 2

@dataclass(frozen=True)
class TcpAddress:
    """``host:port``; host None means "no address given" (a bare port)."""

    host: str | None
    port: int

    @property
    def is_ipv6(self) -> bool:
        return self.host is not None and ":" in self.host

    def render(self) -> str:
        """The address as ssh writes it: ``host:port``, ``[v6]:port`` or a bare port."""
        if self.host is None:
            return str(self.port)
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class UnixAddress:
    """A unix-domain socket path."""

    path: str

    def render(self) -> str:
        return self.path


Address = TcpAddress | UnixAddress


@dataclass(frozen=True)
class Forward:
    """One ``[[forward]]``: where it listens, where it goes, and how its far end is probed."""

    type: ForwardType
    listen: Address
    to: Address | None = None
    probe: Probe | None = None
    public: bool = False
    #: Where the probe asks the far end to connect: the SOCKS CONNECT of a dynamic forward,
    #: the HTTP CONNECT of a local forward to an HTTP proxy (``check``; None: a default).
    probe_target: TcpAddress | None = None

    def describe(self) -> str:
        """A short human form: ``local 3307 -> db:3306``."""
        target = self.to.render() if self.to is not None else "SOCKS"
        return f"{self.type.value} {self.listen.render()} -> {target}"


@dataclass(frozen=True)
class Hop:
    """One jump host, ``[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    def render(self) -> str:
        # ssh's -J reads an unbracketed IPv6 address as host:port, so always bracket one.
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.user}@{host}" if self.user else host
        return f"{text}:{self.port}" if self.port is not None else text


@dataclass(frozen=True)
class HostKeyPolicy:
    mode: HostKeyMode = HostKeyMode.STRICT
    fingerprint: str | None = None  # set only for PINNED: "SHA256:..."

    def render(self) -> str:
        if self.mode is HostKeyMode.PINNED and self.fingerprint:
            return self.fingerprint
        return self.mode.value


#: The states a hook may be run on, as ``[hooks]`` names them (``on_<state>``).
HOOK_STATES = ("up", "down", "failed", "reconnecting")
#: Seconds a hook may run before its process group is killed, when ``[hooks]`` does not say.
DEFAULT_HOOK_TIMEOUT = 10


@dataclass(frozen=True)
class Hooks:
    """``[hooks]``: an argv per state (empty: none), run by the engine on a state change."""

    on_up: tuple[str, ...] = ()
    on_down: tuple[str, ...] = ()
    on_failed: tuple[str, ...] = ()
    on_reconnecting: tuple[str, ...] = ()
    timeout: int = DEFAULT_HOOK_TIMEOUT

    def for_state(self, state: str) -> tuple[str, ...]:
        return tuple(getattr(self, f"on_{state}", ())) if state in HOOK_STATES else ()


@dataclass(frozen=True)
class Profile:
    """A validated tunnel profile. ``source`` is the file it came from, if any."""

    name: str
    host: str
    forwards: tuple[Forward, ...] = ()
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    jump: tuple[Hop, ...] = ()
    ssh_config_file: str | None = None
    client: Client = Client.SSH
    compression: bool = False
    keepalive: int | None = None  # None: DEFAULT_KEEPALIVE; 0: off
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    host_key: HostKeyPolicy = field(default_factory=HostKeyPolicy)
    auth: AuthMethod = AuthMethod.KEY
    password_env: str | None = None
    password_keyring: bool = False  # the password is in the keyring: service sshwrap, user NAME
    share_connection: bool = False
    options: tuple[tuple[str, str], ...] = ()
    hooks: Hooks = field(default_factory=Hooks)
    source: str | None = None

    @property
    def effective_keepalive(self) -> int:
        return DEFAULT_KEEPALIVE if self.keepalive is None else self.keepalive

    def option(self, name: str) -> str | None:
        """The value of an extra ssh option, matched case-insensitively as ssh does."""
        for key, value in self.options:
            if key.lower() == name.lower():
                return value
        return None
