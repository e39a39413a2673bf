"""Turn a raw TOML mapping into a validated ``Profile``, collecting every problem with its key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from sshwrap.core import syntax
from sshwrap.core.hooks import parse_hooks
from sshwrap.core.model import (
    Address,
    AuthMethod,
    Client,
    Forward,
    ForwardType,
    Hop,
    HostKeyMode,
    HostKeyPolicy,
    Probe,
    Profile,
    RestartPolicy,
    TcpAddress,
    UnixAddress,
)
from sshwrap.core.options import check_option
from sshwrap.core.syntax import is_loopback_host
from sshwrap.errors import InvalidInput, Problem
from sshwrap.textsafe import shown

T = TypeVar("T")

PROFILE_KEYS = (
    "host", "user", "port", "identity_file", "description", "tags", "jump", "ssh_config_file",
    "client", "compression", "keepalive", "restart", "host_key", "auth", "password_env",
    "share_connection", "options", "hooks", "forward", "password_keyring",
)

FORWARD_KEYS = ("type", "listen", "to", "probe", "public", "probe_target")

class _Collector:
    """Gathers problems for one file so that validation reports all of them at once."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(message, key=key, file=self.file))

    def take(self, key: str, value: object, convert: Callable[[Any], T]) -> T | None:
        try:
            return convert(value)
        except syntax.SyntaxProblem as exc:
            self.add(key, str(exc))
            return None

    def unknown_keys(self, prefix: str, data: Mapping[str, object], known: tuple[str, ...]) -> None:
        for key in data:
            if key in known:
                continue
            if key == "password":
                self.add(prefix + key, "passwords are never stored in profiles; "
                         "name an environment variable with password_env")
                continue
            import difflib  # only for a typo: its import costs every command

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.add(prefix + key, f"unknown key{hint}")


def _typed(c: _Collector, key: str, value: object, kind: type, kind_name: str) -> bool:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        c.add(key, f"must be {kind_name}, not {type(value).__name__}")
    return ok


def _enum(c: _Collector, key: str, value: object, enum: type[T]) -> T | None:
    choices = [m.value for m in enum]  # type: ignore[attr-defined]
    if isinstance(value, str) and value in choices:
        return enum(value)  # type: ignore[call-arg]
    c.add(key, f"must be one of {', '.join(repr(x) for x in choices)}, not {shown(value)}")
    return None


def _forward_target(c: _Collector, prefix: str, raw: Mapping[str, Any],
                    kind: ForwardType | None) -> Address | None:
    """The ``to`` of a forward: required for local and remote, absent for dynamic."""
    if kind is ForwardType.DYNAMIC:
        if "to" in raw:
            c.add(prefix + ".to", "a dynamic (SOCKS) forward has no 'to': the client picks it")
        return None
    if "to" not in raw:
        if kind is not None:
            c.add(prefix + ".to", "is required for a local or remote forward")
        return None
    return c.take(prefix + ".to", raw["to"], syntax.parse_target)


def _forward_probe(c: _Collector, prefix: str, raw: Mapping[str, Any],
                   kind: ForwardType | None) -> Probe | None:
    if "probe" not in raw:
        return None
    probe = _enum(c, prefix + ".probe", raw["probe"], Probe)
    if probe is Probe.SOCKS and kind is not ForwardType.DYNAMIC and kind is not None:
        c.add(prefix + ".probe", "'socks' probes only a dynamic forward")
    if kind is ForwardType.DYNAMIC and probe not in (None, Probe.SOCKS, Probe.TCP):
        c.add(prefix + ".probe", "a dynamic forward is probed with 'socks' or 'tcp'")
    return probe


def _forward_probe_target(c: _Collector, prefix: str, raw: Mapping[str, Any],
                          kind: ForwardType | None, probe: Probe | None) -> TcpAddress | None:
    """``probe_target = "host:port"``: what a dynamic forward's SOCKS probe, or a local
    forward's HTTP-proxy probe, asks the far end to connect to."""
    if "probe_target" not in raw:
        return None
    key = prefix + ".probe_target"
    if kind is ForwardType.REMOTE:
        c.add(key, "only a local or dynamic forward has a probe target")
        return None
    if kind is ForwardType.LOCAL and probe not in (None, Probe.HTTP):
        c.add(key, "a local forward's probe target is for probe = 'http' (an HTTP proxy)")
        return None
    target = c.take(key, raw["probe_target"], syntax.parse_target)
    if isinstance(target, UnixAddress):
        c.add(key, "must be host:port, not a socket path")
        return None
    return target


def _check_exposure(c: _Collector, prefix: str, listen: Address | None, public: bool) -> None:
    """Loopback unless the forward says otherwise; a unix socket has no public side."""
    if isinstance(listen, TcpAddress) and not public and not is_loopback_host(listen.host):
        c.add(prefix + ".listen",
              f"{listen.render()} listens beyond loopback; set public = true on this forward "
              "if that is really wanted")
    if isinstance(listen, UnixAddress) and public:
        c.add(prefix + ".public", "a unix socket has no public side")


def _check_server_paths(c: _Collector, prefix: str, kind: ForwardType | None,
                        listen: Address | None, to: Address | None) -> None:
    """sshd resolves a relative socket path (or a '~') from its own working directory, which
    the profile cannot know; only the local side's paths are taken from the profile's folder."""
    server_side = {ForwardType.REMOTE: ("listen", listen), ForwardType.LOCAL: ("to", to)}
    key, address = server_side.get(kind, ("", None)) if kind is not None else ("", None)
    if isinstance(address, UnixAddress) and not address.path.startswith("/"):
        c.add(f"{prefix}.{key}", f"socket path {shown(address.path)} is on the server, which "
              "would resolve it from sshd's own working directory; write an absolute path")


def _parse_forward(c: _Collector, index: int, raw: object) -> Forward | None:
    prefix = f"forward[{index}]"
    if not isinstance(raw, Mapping):
        c.add(prefix, "must be a table ([[forward]])")
        return None
    c.unknown_keys(prefix + ".", raw, FORWARD_KEYS)
    if "type" not in raw:
        c.add(prefix + ".type", "is required (local, remote or dynamic)")
        return None
    kind = _enum(c, prefix + ".type", raw["type"], ForwardType)
    public = raw.get("public", False)
    if not _typed(c, prefix + ".public", public, bool, "true or false"):
        public = False
    listen = None
    if "listen" not in raw:
        c.add(prefix + ".listen", "is required")
    else:
        listen = c.take(prefix + ".listen", raw["listen"], syntax.parse_listen)
    to = _forward_target(c, prefix, raw, kind)
    probe = _forward_probe(c, prefix, raw, kind)
    probe_target = _forward_probe_target(c, prefix, raw, kind, probe)
    _check_exposure(c, prefix, listen, bool(public))
    if kind is ForwardType.REMOTE and isinstance(listen, TcpAddress) and listen.port == 0:
        c.add(prefix + ".listen", "0 (a port chosen at start) is for local and dynamic "
              "forwards; a remote forward needs a fixed port")
    _check_server_paths(c, prefix, kind, listen, to)
    if kind is None or listen is None or (kind is not ForwardType.DYNAMIC and to is None):
        return None
    return Forward(type=kind, listen=listen, to=to, probe=probe, public=bool(public),
                   probe_target=probe_target)


def _parse_jump(c: _Collector, value: object) -> tuple[Hop, ...]:
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",")]
    elif isinstance(value, list):
        items = list(value)
    else:
        c.add("jump", "must be a list of '[user@]host[:port]' strings")
        return ()
    hops: list[Hop] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            c.add(f"jump[{i}]", "must be a string '[user@]host[:port]'")
            continue
        hop = c.take(f"jump[{i}]", item, syntax.parse_hop)
        if hop is not None:
            hops.append(hop)
    return tuple(hops)


def _parse_options(c: _Collector, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        c.add("options", "must be a table of ssh options, as options = { Ciphers = \"...\" }")
        return ()
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, raw in value.items():
        key = f"options.{name}"
        if name.lower() in seen:
            c.add(key, "is given twice (ssh option names ignore case)")
            continue
        seen.add(name.lower())
        option = c.take(key, raw, partial(check_option, name))
        if option is not None:
            out.append(option)
    return tuple(out)


def _parse_host_key(c: _Collector, value: object) -> HostKeyPolicy:
    if isinstance(value, str):
        if value in (HostKeyMode.STRICT.value, HostKeyMode.ACCEPT_NEW.value):
            return HostKeyPolicy(HostKeyMode(value))
        if syntax.FINGERPRINT_RE.fullmatch(value):
            return HostKeyPolicy(HostKeyMode.PINNED, value)
    c.add("host_key", "must be 'strict', 'accept-new' or a pinned 'SHA256:...' fingerprint "
          f"(43 base64 characters), not {shown(value)}")
    return HostKeyPolicy()


_SIMPLE_KEYS: tuple[tuple[str, type, str, Callable[[Any], Any]], ...] = (
    ("user", str, "a string", syntax.check_user),
    ("port", int, "a number", syntax.check_port),
    ("identity_file", str, "a string", partial(syntax.check_path, what="identity_file")),
    ("ssh_config_file", str, "a string", partial(syntax.check_path, what="ssh_config_file")),
    ("description", str, "a string", syntax.check_description),
    ("compression", bool, "true or false", bool),
    ("share_connection", bool, "true or false", bool),
    ("password_keyring", bool, "true or false", bool),
)


def _parse_host(c: _Collector, data: Mapping[str, object], fields: dict[str, Any]) -> None:
    if "host" not in data:
        c.add("host", "is required: the tunnel host (name, address or ssh config alias)")
    elif _typed(c, "host", data["host"], str, "a string"):
        fields["host"] = c.take("host", data["host"], syntax.check_host)


def _parse_simple(c: _Collector, data: Mapping[str, object], fields: dict[str, Any]) -> None:
    """Keys that are one typed value each, checked by one function."""
    for key, kind, kind_name, convert in _SIMPLE_KEYS:
        if key in data and _typed(c, key, data[key], kind, kind_name):
            fields[key] = c.take(key, data[key], convert)


def _parse_keepalive(c: _Collector, value: object) -> int | None:
    if not _typed(c, "keepalive", value, int, "a number"):
        return None
    if not isinstance(value, int) or not 0 <= value <= 3600:
        c.add("keepalive", f"{shown(value)} is outside 0-3600 seconds (0 turns keep-alive off)")
        return None
    return value


def _parse_tags(c: _Collector, value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        c.add("tags", "must be a list of strings")
        return None
    for i, tag in enumerate(value):
        if not syntax.TAG_RE.fullmatch(tag):
            c.add(f"tags[{i}]", f"tag {shown(tag)} may hold only ASCII letters, digits, "
                  "'.', '-', '_' (at most 64)")
    return tuple(value)


def _parse_password_env(c: _Collector, value: object) -> str | None:
    if not _typed(c, "password_env", value, str, "a string") or not isinstance(value, str):
        return None
    if syntax.ENV_NAME_RE.fullmatch(value):
        return value
    c.add("password_env", f"{shown(value)} is not an environment variable name; it names "
          "the variable holding the password, never the password itself")
    return None


def _parse_forwards(c: _Collector, value: object) -> tuple[Forward, ...]:
    raw_forwards = value
    if not isinstance(raw_forwards, list):
        c.add("forward", "must be an array of tables ([[forward]])")
        raw_forwards = []
    if not raw_forwards:
        c.add("forward", "a tunnel needs at least one [[forward]]")
    forwards: list[Forward] = []
    for i, raw in enumerate(raw_forwards):
        forward = _parse_forward(c, i, raw)
        if forward is not None:
            forwards.append(forward)
    _check_forward_clashes(c, forwards)
    return tuple(forwards)


def _enum_parser(key: str, enum: type[T]) -> Callable[[_Collector, object], T | None]:
    def parse(c: _Collector, value: object) -> T | None:
        return _enum(c, key, value, enum)

    return parse


#: Keys parsed by a function of their own, in the order problems are reported.
_KEY_PARSERS: tuple[tuple[str, Callable[[_Collector, object], Any]], ...] = (
    ("keepalive", _parse_keepalive),
    ("tags", _parse_tags),
    ("jump", _parse_jump),
    ("client", _enum_parser("client", Client)),
    ("restart", _enum_parser("restart", RestartPolicy)),
    ("auth", _enum_parser("auth", AuthMethod)),
    ("host_key", _parse_host_key),
    ("password_env", _parse_password_env),
    ("options", _parse_options),
    ("hooks", parse_hooks),
)


def parse_profile(name: str, data: Mapping[str, object], source: str | None = None) -> Profile:
    """Validate ``data`` (a parsed TOML document) as the profile ``name``; raise InvalidInput."""
    c = _Collector(source or name)
    c.take("name", name, syntax.check_profile_name)
    c.unknown_keys("", data, PROFILE_KEYS)
    fields: dict[str, Any] = {}
    _parse_host(c, data, fields)
    _parse_simple(c, data, fields)
    for key, parser in _KEY_PARSERS:
        if key in data:
            fields[key] = parser(c, data[key])
    forwards = _parse_forwards(c, data.get("forward", []))
    _check_jump_loop(c, fields)
    if fields.get("auth") is AuthMethod.PASSWORD and fields.get("identity_file"):
        c.add("auth", "auth = \"password\" with an identity_file: choose one")
    _check_keyring(c, fields)
    if c.problems:
        raise InvalidInput(c.problems)
    clean = {k: v for k, v in fields.items() if v is not None}
    return Profile(name=name, forwards=forwards, source=source, **clean)


def _check_keyring(c: _Collector, fields: Mapping[str, Any]) -> None:
    if not fields.get("password_keyring"):
        return
    if fields.get("auth") is not AuthMethod.PASSWORD:
        c.add("password_keyring", "needs auth = \"password\" (the keyring holds a password)")
    elif fields.get("password_env"):
        c.add("password_keyring", "password_keyring with password_env: choose one")


def _check_jump_loop(c: _Collector, fields: Mapping[str, Any]) -> None:
    """A hop at the destination's own host and port: ssh refuses it as a "jumphost loop"
    (whatever the users)."""
    destination = (fields.get("host"), fields.get("port") or 22)
    for i, hop in enumerate(fields.get("jump") or ()):
        if (hop.host, hop.port or 22) == destination:
            c.add(f"jump[{i}]", f"{hop.render()} is the destination itself (a jump host loop)")


def _check_forward_clashes(c: _Collector, forwards: list[Forward]) -> None:
    """Two forwards on the same side may not listen on the same port or socket."""
    seen: dict[tuple[str, str], int] = {}
    for i, fwd in enumerate(forwards):
        side = "remote" if fwd.type is ForwardType.REMOTE else "local"
        spot = fwd.listen.path if isinstance(fwd.listen, UnixAddress) else str(fwd.listen.port)
        if spot == "0":  # each gets a port of its own at start
            continue
        if (side, spot) in seen:
            c.add(f"forward[{i}].listen",
                  f"{fwd.listen.render()} is already used by forward[{seen[side, spot]}]")
        else:
            seen[side, spot] = i
