"""A Profile as the TOML document that reads back as it: only keys that differ from defaults."""

from __future__ import annotations

from typing import Any

from sshwrap.core.hooks import hooks_to_mapping
from sshwrap.core.model import Forward, Profile, TcpAddress


def _forward_to_mapping(fwd: Forward) -> dict[str, Any]:
    item: dict[str, Any] = {"type": fwd.type.value}
    listen = fwd.listen
    bare_port = isinstance(listen, TcpAddress) and listen.host is None
    item["listen"] = listen.port if isinstance(listen, TcpAddress) and bare_port \
        else listen.render()
    if fwd.to is not None:
        item["to"] = fwd.to.render()
    if fwd.probe is not None:
        item["probe"] = fwd.probe.value
    if fwd.public:
        item["public"] = True
    if fwd.probe_target is not None:
        item["probe_target"] = fwd.probe_target.render()
    return item


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
    for key in ("client", "compression", "restart", "auth", "password_keyring",
                "share_connection"):
        value = getattr(profile, key)
        if value != getattr(defaults, key):
            out[key] = value.value if hasattr(value, "value") else value
    if profile.host_key != defaults.host_key:
        out["host_key"] = profile.host_key.render()
    if profile.options:
        out["options"] = dict(profile.options)
    if profile.hooks != defaults.hooks:
        out["hooks"] = hooks_to_mapping(profile.hooks)
    out["forward"] = [_forward_to_mapping(fwd) for fwd in profile.forwards]
    return out
