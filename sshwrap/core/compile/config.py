"""Compile a Profile to an ``~/.ssh/config`` Host block that cannot inject a directive."""

from __future__ import annotations

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.ssh import ssh_options
from sshwrap.core.compile.values import refuse_free_ports, require_parsed
from sshwrap.core.model import ForwardType, Profile
from sshwrap.textsafe import shown

KEYWORD = {
    ForwardType.LOCAL: "LocalForward",
    ForwardType.REMOTE: "RemoteForward",
    ForwardType.DYNAMIC: "DynamicForward",
}
INDENT = "    "


def _value(text: str) -> str:
    """A config value, quoted when it holds a character ssh would split or treat specially.

    Profile values are already restricted to a safe alphabet; this is the second line of
    defence, and refuses what no quoting can make safe.
    """
    if any(ch in text for ch in "\r\n\0\"\\") or not text.isascii() or not text.isprintable():
        raise NotExpressible("ssh_config", "value", f"{shown(text)} cannot be written safely")
    if not text or any(ch.isspace() or ch in "#=%'" for ch in text):
        return f'"{text}"'
    return text


def compile_config(profile: Profile, facts: HostFacts | None = None) -> str:
    """The Host block, ending with a newline, with forwards as explicit binds."""
    require_parsed(profile, "ssh_config")
    facts = facts or HostFacts()
    if profile.ssh_config_file:
        raise NotExpressible(
            "ssh_config", "ssh_config_file",
            "a Host block cannot name another config file; include that file instead",
        )
    refuse_free_ports(profile, "ssh_config")
    lines = [f"Host {_value(profile.name)}"]

    def put(keyword: str, *values: str) -> None:
        lines.append(INDENT + " ".join([keyword, *(_value(v) for v in values)]))

    if profile.description:
        lines.insert(0, f"# {profile.description}")
    # ssh keeps the first value it reads for an option: sshwrap's own settings come first.
    for name, value in ssh_options(profile):
        put(name, value)
    put("SessionType", "none")
    # HostName expands %-tokens; a scoped IPv6 address's '%' must reach ssh as one.
    put("HostName", profile.host.replace("%", "%%"))
    if profile.user:
        put("User", profile.user)
    if profile.port is not None:
        put("Port", str(profile.port))
    if profile.identity_file:
        put("IdentityFile", profile.identity_file)
    if profile.jump:
        put("ProxyJump", ",".join(hop.render() for hop in profile.jump))
    for forward in expanded_forwards(profile, facts):
        if forward.to is None:
            put(KEYWORD[forward.type], forward.listen.render())
        else:
            put(KEYWORD[forward.type], forward.listen.render(), forward.to.render())
    if profile.compression:
        put("Compression", "yes")
    for name, value in profile.options:
        put(name, value)
    return "\n".join(lines) + "\n"
