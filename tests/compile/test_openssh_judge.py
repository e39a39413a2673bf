"""OpenSSH is the judge: ``ssh -G`` must read the compiled argv and config block the same way."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import Profile
from sshwrap.core.parse import parse_profile
from sshwrap.core.sshcmd import parse_ssh_command
from sshwrap.errors import InvalidInput
from sshwrap.store import load_profile_file

from .sshg import DANGEROUS, MULTI, SshRejected, argv_settings, config_settings, view

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="ssh is not installed")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "profiles").glob("*.toml"))
FACTS = HostFacts(ipv6_loopback=True)


def _assert_same_meaning(profile: Profile) -> None:
    from_argv = view(argv_settings(compile_ssh(profile, FACTS)))
    from_config = view(config_settings(compile_config(profile, FACTS), profile.name))
    assert from_argv == from_config
    assert from_argv["hostname"] == profile.host
    assert from_argv["exitonforwardfailure"] == "yes"
    assert from_argv["stricthostkeychecking"] in ("true", "accept-new")
    forwards_seen = [item for key in MULTI for item in from_argv[key]]  # type: ignore[attr-defined]
    assert len(forwards_seen) >= len(profile.forwards)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_mean_the_same_as_argv_and_as_config(example: Path) -> None:
    _assert_same_meaning(load_profile_file(example))


def test_the_judge_sees_a_difference() -> None:
    # Guard against a comparison that is always equal.
    one = view(argv_settings(["ssh", "-L", "127.0.0.1:1:a:1", "h"]))
    two = view(argv_settings(["ssh", "-L", "127.0.0.1:1:a:2", "h"]))
    assert one != two


# --- random valid profiles ---------------------------------------------------------------

hosts = st.sampled_from(["gateway", "db.internal", "10.0.0.7", "fe80::1", "bastion-host", "h_1"])
users = st.sampled_from(["alice", "ssh_cassie", "deploy.bot", "u-1"])
ports = st.integers(min_value=1, max_value=65535)
hops = st.builds(
    lambda host, user, port: (f"{user}@" if user else "")
    + (f"[{host}]" if ":" in host and port else host) + (f":{port}" if port else ""),
    hosts, st.none() | users, st.none() | ports,
)


@st.composite
def forwards(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=4))
    listen_ports = draw(st.lists(st.integers(1024, 65535), min_size=count, max_size=count,
                                 unique=True))
    items: list[dict[str, Any]] = []
    for i, port in enumerate(listen_ports):
        kind = draw(st.sampled_from(["local", "remote", "dynamic"]))
        listen: object = draw(st.sampled_from(
            [port, f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
             f"/tmp/sshwrap-{kind}-{i}.sock"]))
        item: dict[str, Any] = {"type": kind, "listen": listen}
        if kind != "dynamic":
            item["to"] = draw(st.sampled_from(
                ["db-server:3306", "localhost:8888", "[fe80::1]:22", "10.1.2.3:443",
                 "/run/app.sock"]))
        items.append(item)
    return items


@st.composite
def valid_profiles(draw: st.DrawFn) -> Profile:
    data: dict[str, Any] = {"host": draw(hosts), "forward": draw(forwards())}
    if draw(st.booleans()):
        data["user"] = draw(users)
    if draw(st.booleans()):
        data["port"] = draw(ports)
    if draw(st.booleans()):
        data["jump"] = draw(st.lists(hops, min_size=1, max_size=3))
    data["compression"] = draw(st.booleans())
    if draw(st.booleans()):
        data["keepalive"] = draw(st.integers(0, 120))
    data["host_key"] = draw(st.sampled_from(["strict", "accept-new"]))
    if draw(st.booleans()):
        data["options"] = {"ConnectTimeout": draw(st.integers(1, 60)),
                           "Ciphers": "aes256-gcm@openssh.com"}
    try:
        return parse_profile(draw(st.sampled_from(["p", "web-1", "db.prod"])), data)
    except InvalidInput:
        assume(False)
        raise


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_profiles(), st.booleans())
def test_random_profiles_mean_the_same(profile: Profile, ipv6: bool) -> None:
    facts = HostFacts(ipv6_loopback=ipv6)
    from_argv = view(argv_settings(compile_ssh(profile, facts)))
    from_config = view(config_settings(compile_config(profile, facts), profile.name))
    assert from_argv == from_config


# --- hostile values ----------------------------------------------------------------------

HOSTILE_PIECES = [
    "\n", "\r\n", "#", "%h", "%%", '"', "'", " ", "\t", "-oProxyCommand=sh", "$(id)", "`id`",
    ";", "|", "&", "\\", "=", "\u00e9", "\u202e", "\x00", "ProxyCommand nc %h %p",
    "\nLocalCommand touch /tmp/x", "~", "*", ",",
]
hostile_text = st.lists(
    st.sampled_from(HOSTILE_PIECES) | st.text(alphabet="abz019.-_:@[]/", max_size=6),
    min_size=1, max_size=5,
).map("".join)
FIELDS = ["host", "user", "identity_file", "description", "jump", "tags", "to", "listen",
          "option_value", "option_name"]


def _hostile_mapping(field: str, value: str) -> dict[str, Any]:
    data: dict[str, Any] = {"host": "gateway", "forward": [
        {"type": "local", "listen": 3307, "to": "db:3306"}]}
    if field in ("host", "user", "identity_file", "description"):
        data[field] = value
    elif field in ("jump", "tags"):
        data[field] = [value]
    elif field in ("to", "listen"):
        data["forward"][0][field] = value
    elif field == "option_value":
        data["options"] = {"HostKeyAlias": value}
    else:
        data["options"] = {value: "yes"}
    return data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), hostile_text)
def test_hostile_values_are_refused_or_neutralised(field: str, value: str) -> None:
    try:
        profile = parse_profile("hostile", _hostile_mapping(field, value))
    except InvalidInput:
        return
    try:
        block = compile_config(profile, FACTS)
    except NotExpressible:
        return
    argv = compile_ssh(profile, FACTS)
    assert argv[-2:] == ["--", profile.host]
    try:
        seen = [argv_settings(argv), config_settings(block, "hostile")]
    except SshRejected:
        return  # OpenSSH itself refused the value: nothing was injected
    for settings_seen in seen:
        assert not any(key in settings_seen for key in DANGEROUS)
        assert settings_seen["permitlocalcommand"] == ["no"]
        assert settings_seen["hostname"] == [profile.host]
    body = [ln for ln in block.splitlines() if not ln.startswith("#")]
    assert body[0] == "Host hostile"
    assert all(ln.startswith("    ") for ln in body[1:])


@pytest.mark.parametrize("value", [
    "gateway\nProxyCommand sh", "gate way", "-oProxyCommand=x", "%h", "#x", "g\u00e9",
])
def test_hostile_hosts_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="host"):
        parse_profile("x", _hostile_mapping("host", value))


def test_proxycommand_through_options_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_profile("x", {"host": "h", "options": {"proxycommand": "nc %h %p"},
                            "forward": [{"type": "dynamic", "listen": 1080}]})
    assert caught.value.problems[0].key == "options.proxycommand"


# --- round trip: ssh command line -> profile -> ssh command line ------------------------

ROUND_TRIPS = [
    "ssh -J bastion-host -L 7999:git-server:7999 test-server -N",
    "ssh -L 8080:web-server:80 -L 8443:web-server:443 bastion-host -N",
    "ssh -L 2143:mail-server:143 trusted-host -N",
    "ssh -Cv -l ssh_cassie -L 3307:db-server:3306 gateway",
    "ssh -D 8080 remote-host -N",
    "ssh -J bridge-host -R 9999:localhost:8888 beta-server",
    "ssh -fNT -p 2222 -oServerAliveInterval=15 alice@gw -L127.0.0.1:5432:db:5432",
    "ssh -N -o Compression=yes -o ExitOnForwardFailure=yes -J u@j1:2200,j2 "
    "-R [::1]:9000:[fe80::1]:22 -L /tmp/s.sock:/run/d.sock h",
    "ssh -o StrictHostKeyChecking=accept-new -o ConnectTimeout=5 -D localhost:1080 ssh://bob@h:2201",
]


def _loopback_view(settings_seen: dict[str, list[str]]) -> dict[str, object]:
    """The view with OpenSSH's own meaning of an unaddressed forward written out: a local or
    dynamic bare port or 'localhost' listens on loopback (both families), a remote bare
    port on the server's localhost."""
    out = view(settings_seen)
    for key in ("localforward", "dynamicforward"):
        spelled: list[str] = []
        for item in out[key]:  # type: ignore[attr-defined]
            listen, _, rest = item.partition(" ")
            port = listen.rpartition(":")[2]
            if listen.isdigit() or listen.startswith("[localhost]:"):
                spelled += [f"[127.0.0.1]:{port} {rest}".strip(), f"[::1]:{port} {rest}".strip()]
            else:
                spelled.append(item)
        out[key] = sorted(spelled)
    out["remoteforward"] = sorted(
        f"[localhost]:{item}" if item.split(" ")[0].isdigit() else item
        for item in out["remoteforward"]  # type: ignore[attr-defined]
    )
    return out


@pytest.mark.parametrize("command", ROUND_TRIPS)
def test_ssh_command_round_trip(command: str) -> None:
    argv = command.split()
    profile = parse_profile("rt", parse_ssh_command(argv))
    original = _loopback_view(argv_settings(argv))
    compiled = _loopback_view(argv_settings(compile_ssh(profile, FACTS)))
    # sshwrap's policies (fail on forward failure, keep-alive, strict host keys) are
    # deliberate differences; everything the command line said must survive.
    for key in ("serveraliveinterval", "exitonforwardfailure", "stricthostkeychecking"):
        if f"-o{key}" not in command.lower().replace("-o ", "-o"):
            original.pop(key)
            compiled.pop(key)
    assert compiled == original
