"""Turn a raw TOML mapping into a validated ``Profile``, collecting every problem with its key."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sshwrap.core import syntax
from sshwrap.core.model import (
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
    is_loopback_host,
)
from sshwrap.errors import InvalidInput, Problem

T = TypeVar("T")

PROFILE_KEYS = (
    "host", "user", "port", "identity_file", "description", "tags", "jump", "ssh_config_file",
    "client", "compression", "keepalive", "restart", "host_key", "auth", "password_env",
    "share_connection", "options", "forward",
)
FORWARD_KEYS = ("type", "listen", "to", "probe", "public")

#: Options a profile may not set through ``options``, with the reason shown to the user.
_RUNS_OR_REDIRECTS = "runs a command or redirects the connection; sshwrap refuses it"
FORBIDDEN_OPTIONS: dict[str, str] = {
    **{
        name.lower(): _RUNS_OR_REDIRECTS
        for name in (
            "ProxyCommand", "LocalCommand", "PermitLocalCommand", "KnownHostsCommand",
            "RemoteCommand", "ProxyUseFdpass", "PKCS11Provider", "SecurityKeyProvider",
            "Tunnel", "TunnelDevice", "ForkAfterAuthentication", "StdinNull",
        )
    },
    **{
        name.lower(): "is a config block keyword, not an option"
        for name in ("Host", "Match", "Include", "IgnoreUnknown")
    },
    "proxyjump": "use the 'jump' key",
    "localforward": "use a [[forward]] with type = \"local\"",
    "remoteforward": "use a [[forward]] with type = \"remote\"",
    "dynamicforward": "use a [[forward]] with type = \"dynamic\"",
    "gatewayports": "set public = true on the forward that should listen beyond loopback",
    "stricthostkeychecking": "use the 'host_key' key",
    "hostname": "use the 'host' key",
    "user": "use the 'user' key",
    "port": "use the 'port' key",
    "identityfile": "use the 'identity_file' key",
    "compression": "use the 'compression' key",
    "serveraliveinterval": "use the 'keepalive' key",
    "serveralivecountmax": "sshwrap sets it from 'keepalive'",
    **{
        name.lower(): "is managed by sshwrap"
        for name in (
            "ExitOnForwardFailure", "SessionType", "RequestTTY", "ControlMaster",
            "ControlPath", "ControlPersist", "BatchMode", "LogLevel", "ClearAllForwardings",
        )
    },
}


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
    c.add(key, f"must be one of {', '.join(repr(x) for x in choices)}, not {value!r}")
    return None


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
    to = None
    if kind is ForwardType.DYNAMIC:
        if "to" in raw:
            c.add(prefix + ".to", "a dynamic (SOCKS) forward has no 'to': the client picks it")
    elif "to" not in raw:
        if kind is not None:
            c.add(prefix + ".to", "is required for a local or remote forward")
    else:
        to = c.take(prefix + ".to", raw["to"], syntax.parse_target)
    probe = None
    if "probe" in raw:
        probe = _enum(c, prefix + ".probe", raw["probe"], Probe)
        if probe is Probe.SOCKS and kind is not ForwardType.DYNAMIC and kind is not None:
            c.add(prefix + ".probe", "'socks' probes only a dynamic forward")
        if kind is ForwardType.DYNAMIC and probe not in (None, Probe.SOCKS, Probe.TCP):
            c.add(prefix + ".probe", "a dynamic forward is probed with 'socks' or 'tcp'")
    if isinstance(listen, TcpAddress) and not public and not is_loopback_host(listen.host):
        c.add(prefix + ".listen",
              f"{listen.render()} listens beyond loopback; set public = true on this forward "
              "if that is really wanted")
    if isinstance(listen, UnixAddress) and public:
        c.add(prefix + ".public", "a unix socket has no public side")
    if kind is None or listen is None or (kind is not ForwardType.DYNAMIC and to is None):
        return None
    return Forward(type=kind, listen=listen, to=to, probe=probe, public=bool(public))


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
        if not syntax.OPTION_NAME_RE.fullmatch(name):
            c.add(key, "is not an ssh option name (letters and digits only)")
            continue
        reason = FORBIDDEN_OPTIONS.get(name.lower())
        if reason:
            c.add(key, f"{name} {reason}" if reason.startswith(("runs", "is ")) else reason)
            continue
        if name.lower() in seen:
            c.add(key, "is given twice (ssh option names ignore case)")
            continue
        seen.add(name.lower())
        text = c.take(key, raw, lambda v, n=name: syntax.check_option_value(n, v))
        if text is not None:
            out.append((name, text))
    return tuple(out)


def _parse_host_key(c: _Collector, value: object) -> HostKeyPolicy:
    if isinstance(value, str):
        if value in (HostKeyMode.STRICT.value, HostKeyMode.ACCEPT_NEW.value):
            return HostKeyPolicy(HostKeyMode(value))
        if syntax.FINGERPRINT_RE.fullmatch(value):
            return HostKeyPolicy(HostKeyMode.PINNED, value)
    c.add("host_key", "must be 'strict', 'accept-new' or a pinned 'SHA256:...' fingerprint "
          f"(43 base64 characters), not {value!r}")
    return HostKeyPolicy()


def _check_description(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise syntax.SyntaxProblem("may not hold newlines or control characters")
    if len(value) > 200:
        raise syntax.SyntaxProblem("is longer than 200 characters")
    return value


def parse_profile(name: str, data: Mapping[str, object], source: str | None = None) -> Profile:
    """Validate ``data`` (a parsed TOML document) as the profile ``name``; raise InvalidInput."""
    c = _Collector(source or name)
    if not syntax.PROFILE_NAME_RE.fullmatch(name):
        c.add("name", f"profile name {name!r} must be letters, digits, '.', '-' or '_' "
              "(starting with a letter or digit, at most 64), so it is a safe ssh Host name")
    c.unknown_keys("", data, PROFILE_KEYS)
    fields: dict[str, Any] = {}

    if "host" not in data:
        c.add("host", "is required: the tunnel host (name, address or ssh config alias)")
    elif _typed(c, "host", data["host"], str, "a string"):
        fields["host"] = c.take("host", data["host"], syntax.check_host)

    simple: list[tuple[str, type, str, Callable[[Any], Any]]] = [
        ("user", str, "a string", syntax.check_user),
        ("port", int, "a number", syntax.check_port),
        ("identity_file", str, "a string", lambda v: syntax.check_path(v, "identity_file")),
        ("ssh_config_file", str, "a string", lambda v: syntax.check_path(v, "ssh_config_file")),
        ("description", str, "a string", _check_description),
        ("compression", bool, "true or false", bool),
        ("share_connection", bool, "true or false", bool),
    ]
    for key, kind, kind_name, convert in simple:
        if key in data and _typed(c, key, data[key], kind, kind_name):
            fields[key] = c.take(key, data[key], convert)

    if "keepalive" in data and _typed(c, "keepalive", data["keepalive"], int, "a number"):
        keepalive = data["keepalive"]
        assert isinstance(keepalive, int)
        if not 0 <= keepalive <= 3600:
            c.add("keepalive", f"{keepalive} is outside 0-3600 seconds (0 turns keep-alive off)")
        else:
            fields["keepalive"] = keepalive
    if "tags" in data:
        tags = data["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            c.add("tags", "must be a list of strings")
        else:
            for i, tag in enumerate(tags):
                if not syntax.TAG_RE.fullmatch(tag):
                    c.add(f"tags[{i}]", f"tag {tag!r} may hold only letters, digits, '.', '-', '_'")
            fields["tags"] = tuple(tags)
    if "jump" in data:
        fields["jump"] = _parse_jump(c, data["jump"])
    for key, enum in (("client", Client), ("restart", RestartPolicy), ("auth", AuthMethod)):
        if key in data:
            fields[key] = _enum(c, key, data[key], enum)
    if "host_key" in data:
        fields["host_key"] = _parse_host_key(c, data["host_key"])
    if "password_env" in data and _typed(c, "password_env", data["password_env"], str, "a string"):
        env_name = data["password_env"]
        assert isinstance(env_name, str)
        if syntax.ENV_NAME_RE.fullmatch(env_name):
            fields["password_env"] = env_name
        else:
            c.add("password_env", f"{env_name!r} is not an environment variable name; it names "
                  "the variable holding the password, never the password itself")
    if "options" in data:
        fields["options"] = _parse_options(c, data["options"])

    forwards: list[Forward] = []
    raw_forwards = data.get("forward", [])
    if not isinstance(raw_forwards, list):
        c.add("forward", "must be an array of tables ([[forward]])")
        raw_forwards = []
    if not raw_forwards:
        c.add("forward", "a tunnel needs at least one [[forward]]")
    for i, raw in enumerate(raw_forwards):
        forward = _parse_forward(c, i, raw)
        if forward is not None:
            forwards.append(forward)
    _check_forward_clashes(c, forwards)
    if fields.get("auth") is AuthMethod.PASSWORD and fields.get("identity_file"):
        c.add("auth", "auth = \"password\" with an identity_file: choose one")

    if c.problems:
        raise InvalidInput(c.problems)
    clean = {k: v for k, v in fields.items() if v is not None}
    return Profile(name=name, forwards=tuple(forwards), source=source, **clean)


def _check_forward_clashes(c: _Collector, forwards: list[Forward]) -> None:
    """Two forwards on the same side may not listen on the same port or socket."""
    seen: dict[tuple[str, str], int] = {}
    for i, fwd in enumerate(forwards):
        side = "remote" if fwd.type is ForwardType.REMOTE else "local"
        spot = fwd.listen.path if isinstance(fwd.listen, UnixAddress) else str(fwd.listen.port)
        if (side, spot) in seen:
            c.add(f"forward[{i}].listen",
                  f"{fwd.listen.render()} is already used by forward[{seen[side, spot]}]")
        else:
            seen[side, spot] = i


def profile_to_mapping(profile: Profile) -> dict[str, Any]:
    """The TOML document for ``profile``: only keys that differ from the defaults, in order."""
    defaults = Profile(name=profile.name, host=profile.host)
    out: dict[str, Any] = {}
    if profile.description:
        out["description"] = profile.description
    out["host"] = profile.host
    for key in ("user", "port", "identity_file", "ssh_config_file", "keepalive", "password_env"):
        value = getattr(profile, key)
        if value is not None:
            out[key] = value
    if profile.tags:
        out["tags"] = list(profile.tags)
    if profile.jump:
        out["jump"] = [hop.render() for hop in profile.jump]
    for key in ("client", "compression", "restart", "auth", "share_connection"):
        value = getattr(profile, key)
        if value != getattr(defaults, key):
            out[key] = value.value if hasattr(value, "value") else value
    if profile.host_key != defaults.host_key:
        out["host_key"] = profile.host_key.render()
    if profile.options:
        out["options"] = dict(profile.options)
    forwards = []
    for fwd in profile.forwards:
        item: dict[str, Any] = {"type": fwd.type.value}
        listen = fwd.listen
        item["listen"] = listen.port if isinstance(listen, TcpAddress) and listen.host is None \
            else listen.render()
        if fwd.to is not None:
            item["to"] = fwd.to.render()
        if fwd.probe is not None:
            item["probe"] = fwd.probe.value
        if fwd.public:
            item["public"] = True
        forwards.append(item)
    out["forward"] = forwards
    return out
