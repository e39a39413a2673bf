"""ssh -G judges every accepted profile: exactly the intended tunnel, sshwrap's settings win."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import ForwardType, Profile, UnixAddress
from sshwrap.core.options import ALLOWED
from sshwrap.core.parse import parse_profile
from sshwrap.errors import InvalidInput
from sshwrap.runtime.client.auth import hop_options
from sshwrap.runtime.client.launch import client_config_text
from tests.compile.sshg import argv_settings, config_settings

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="ssh is not installed")

#: A user config that tries to undo every safety setting; sshwrap's values must still win.
HOSTILE_CONFIG = """\
Host *
    StrictHostKeyChecking no
    ExitOnForwardFailure no
    StreamLocalBindUnlink yes
    NumberOfPasswordPrompts 5
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile /dev/null
    BatchMode no
    ServerAliveInterval 999
    ServerAliveCountMax 99
    PasswordAuthentication yes
"""
PINNED = "/var/lib/sshwrap-test/pinned_known_hosts"

label = st.from_regex(r"[a-z0-9_]([a-z0-9_-]{0,8}[a-z0-9_])?", fullmatch=True)
names = st.lists(label, min_size=1, max_size=3).map(".".join).filter(
    lambda n: not n.replace(".", "").isdigit() and not n.startswith(("0x", "0X")))
ipv4 = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
scopes = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}", fullmatch=True)
ipv6 = st.sampled_from(["fe80::1", "2001:db8::7", "::1", "fd00::a:b"])
scoped = st.tuples(ipv6, scopes).map(lambda t: f"{t[0]}%{t[1]}")
hosts = names | ipv4 | ipv6 | scoped
hop_hosts = names | ipv4 | ipv6
ports = st.integers(1, 65535)
users = st.from_regex(r"[a-z_][a-z0-9._-]{0,10}", fullmatch=True)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


hops = st.builds(lambda h, u, p: (f"{u}@" if u else "") + (_bracket(h) if p or ":" in h else h)
                 + (f":{p}" if p else ""), hop_hosts, st.none() | users, st.none() | ports)

OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "Ciphers": st.sampled_from(["aes256-gcm@openssh.com", "aes128-ctr,aes256-ctr"]),
    "MACs": st.sampled_from(["hmac-sha2-256", "hmac-sha2-512-etm@openssh.com"]),
    "KexAlgorithms": st.sampled_from(["curve25519-sha256", "-diffie-hellman-group14-sha256"]),
    "HostKeyAlgorithms": st.sampled_from(["ssh-ed25519", "+ssh-rsa"]),
    "ConnectTimeout": st.integers(1, 60),
    "ConnectionAttempts": st.integers(1, 5),
    "AddressFamily": st.sampled_from(["any", "inet", "inet6"]),
    "TCPKeepAlive": st.booleans(),
    "IdentitiesOnly": st.booleans(),
    "IPQoS": st.sampled_from(["af21", "lowdelay", "cs1"]),
    "IdentityAgent": st.sampled_from(["none", "/run/agent.sock"]),
    "CertificateFile": st.just("~/.ssh/id-cert.pub"),
    "PreferredAuthentications": st.sampled_from(["publickey", "publickey,password"]),
    "RekeyLimit": st.sampled_from(["1G", "default"]),
    "BindInterface": st.sampled_from(["lo", "eth0"]),
}
#: Options whose value ``ssh -G`` prints back as the profile wrote it.
ECHOED = {"connecttimeout", "connectionattempts", "addressfamily", "tcpkeepalive",
          "identitiesonly", "ciphers", "macs", "bindinterface"}


@st.composite
def forward_tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 3))
    listen_ports = draw(st.lists(st.integers(1024, 65535), min_size=count, max_size=count,
                                 unique=True))
    items = []
    for i, port in enumerate(listen_ports):
        kind = draw(st.sampled_from(["local", "remote", "dynamic"]))
        listen: object = draw(st.sampled_from(
            [port, f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
             f"127.{i}.0.9:{port}", f"/tmp/sshwrap-view-{kind}-{i}.sock"]))
        item: dict[str, Any] = {"type": kind, "listen": listen}
        if kind != "dynamic":
            target_host = draw(hosts)
            item["to"] = draw(st.sampled_from(
                [f"{_bracket(target_host)}:{draw(ports)}", "/run/app.sock"]))
        items.append(item)
    return items


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    data: dict[str, Any] = {"host": draw(hosts), "forward": draw(forward_tables()),
                            "host_key": draw(st.sampled_from(["strict", "accept-new"])),
                            "keepalive": draw(st.integers(0, 60))}
    if draw(st.booleans()):
        data["user"] = draw(users)
    if draw(st.booleans()):
        data["port"] = draw(ports)
    if draw(st.booleans()):
        data["jump"] = draw(st.lists(hops, min_size=1, max_size=3))
    chosen = draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)), max_size=6, unique=True))
    data["options"] = {name: draw(OPTION_VALUES[name]) for name in chosen}
    try:
        return parse_profile("judged", data)
    except InvalidInput:
        assume(False)
        raise


_NO_BRACKETS = str.maketrans("", "", "[]")


def _norm(address: str) -> str:
    """``[h]:p`` as ssh -G prints it, to ``h:p``."""
    if address.startswith("["):
        host, _, port = address[1:].partition("]:")
        return f"{host}:{port}"
    return address


def _forwards_seen(settings: dict[str, list[str]]) -> set[str]:
    local = settings.get("localforward", [])
    local_listens = {_norm(line.split()[0]) for line in local}
    seen = {"L " + " ".join(_norm(p) for p in line.split()) for line in local}
    seen |= {"R " + " ".join(_norm(p) for p in line.split())
             for line in settings.get("remoteforward", [])}
    # ssh 9.x -G also lists a local forward that has no target host (a unix socket on either
    # side) under dynamicforward; it is the same forward, not another one.
    seen |= {"D " + _norm(line) for line in settings.get("dynamicforward", [])
             if _norm(line) not in local_listens}
    return seen


def _forwards_meant(profile: Profile, facts: HostFacts) -> set[str]:
    letter = {ForwardType.LOCAL: "L", ForwardType.REMOTE: "R", ForwardType.DYNAMIC: "D"}
    meant = set()
    for fwd in expanded_forwards(profile, facts):
        listen = fwd.listen.render() if isinstance(fwd.listen, UnixAddress) \
            else f"{fwd.listen.host}:{fwd.listen.port}" if fwd.listen.host else str(fwd.listen.port)
        parts = [listen]
        if fwd.to is not None:
            parts.append(fwd.to.render() if isinstance(fwd.to, UnixAddress)
                         else f"{fwd.to.host}:{fwd.to.port}")
        meant.add(f"{letter[fwd.type]} {' '.join(parts)}")
    return meant


def _assert_intended(profile: Profile, settings: dict[str, list[str]], facts: HostFacts) -> None:
    one = {key: values[0] for key, values in settings.items()}
    address, _, scope = profile.host.partition("%")
    if scope.isdigit():  # ssh names the interface of a numeric scope ("%1" is "%lo")
        assert one["hostname"].partition("%")[0] == address
    else:
        assert one["hostname"] == profile.host
    assert one["port"] == str(profile.port or 22)
    if profile.user:
        assert one["user"] == profile.user
    # ssh -G brackets some hop hosts that need none; the chain is the same either way.
    chain = ",".join(h.render() for h in profile.jump) or None
    assert (one.get("proxyjump") or "").translate(_NO_BRACKETS) == \
        (chain or "").translate(_NO_BRACKETS)
    assert ("proxyjump" in one) == (chain is not None)
    assert _forwards_seen(settings) == _forwards_meant(profile, facts)
    assert one["exitonforwardfailure"] == "yes"
    assert one["stricthostkeychecking"] == (
        "accept-new" if profile.host_key.mode.value == "accept-new" else "true")
    assert one["serveraliveinterval"] == str(profile.effective_keepalive)
    if any(isinstance(f.listen, UnixAddress) and f.type is not ForwardType.REMOTE
           for f in profile.forwards):
        assert one["streamlocalbindunlink"] == "no"
    for name, value in profile.options:
        if name.lower() in ECHOED:
            assert one[name.lower()] == value


def _runtime_argv(profile: Profile, facts: HostFacts, log: Path, config: Path) -> list[str]:
    """The argv the runtime compiles for a password profile with a pinned key."""
    return compile_ssh(profile, facts, spec=LaunchSpec(
        log_path=str(log), answers_prompts=True, pinned_known_hosts=str(PINNED),
        client_config=str(config)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles(), st.booleans())
def test_openssh_sees_exactly_the_intended_tunnel(profile: Profile, ipv6: bool) -> None:
    facts = HostFacts(ipv6_loopback=ipv6)
    _assert_intended(profile, argv_settings(compile_ssh(profile, facts)), facts)
    block = compile_config(profile, facts)
    # What config sync writes, read after a hostile user config: the block comes first.
    with tempfile.TemporaryDirectory(prefix="sshwrap-view-") as tmp:
        synced = Path(tmp) / "config"
        synced.write_text(block + "\n" + HOSTILE_CONFIG)
        _assert_intended(profile, config_settings(synced.read_text(), profile.name), facts)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles())
def test_runtime_argv_keeps_sshwrap_settings_against_a_hostile_config(profile: Profile) -> None:
    """The profile names a config that undoes every safety setting; the runtime's argv (prompt
    options, pinned known_hosts, per-tunnel config) still has ssh use sshwrap's values."""
    from dataclasses import replace

    facts = HostFacts()
    with tempfile.TemporaryDirectory(prefix="sshwrap-view-") as tmp:
        hostile = Path(tmp) / "hostile_config"
        hostile.write_text(HOSTILE_CONFIG)
        profile = replace(profile, ssh_config_file=str(hostile))
        config = Path(tmp) / "client.conf"
        config.write_text(client_config_text(profile, hop_options(profile,
                                                                  answers_prompts=True)))
        argv = _runtime_argv(profile, facts, Path(tmp) / "log", config)
        settings = argv_settings(argv)
    _assert_intended(profile, settings, facts)
    assert settings["numberofpasswordprompts"] == ["1"]
    assert settings["userknownhostsfile"] == [PINNED]
    assert settings["batchmode"] == ["no"]
    assert settings["serveralivecountmax"][0] == ("2" if profile.effective_keepalive else "99")


def test_every_allowed_option_is_generated() -> None:
    generated = {name.lower() for name in OPTION_VALUES}
    assert generated <= set(ALLOWED)
    assert len(generated) >= 15


def test_order_alone_keeps_sshwrap_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a profile built around the allow-list (as no parsed profile can be) does not
    override a setting sshwrap or the runtime makes: those come first, and ssh keeps the first.
    The compiler refuses such a profile; with that check taken out, order alone still holds."""
    from dataclasses import replace

    from sshwrap.core.compile import NotExpressible, ssh

    base = parse_profile("order", {"host": "gw", "forward": [
        {"type": "local", "listen": "/tmp/sshwrap-order.sock", "to": "db:1"}]})
    profile = replace(base, options=(
        ("StrictHostKeyChecking", "no"), ("ExitOnForwardFailure", "no"),
        ("UserKnownHostsFile", "/dev/null"), ("NumberOfPasswordPrompts", "5"),
        ("StreamLocalBindUnlink", "yes"), ("BatchMode", "no"), ("ServerAliveInterval", "999")))
    with pytest.raises(NotExpressible, match=r"options\.StrictHostKeyChecking: .* is refused"):
        ssh.compile_ssh(profile, HostFacts())
    monkeypatch.setattr(ssh, "require_parsed", lambda profile, target: None)
    with tempfile.TemporaryDirectory(prefix="sshwrap-view-") as tmp:
        config = Path(tmp) / "client.conf"
        config.write_text(client_config_text(profile, hop_options(profile,
                                                                  answers_prompts=True)))
        settings = argv_settings(_runtime_argv(profile, HostFacts(), Path(tmp) / "log", config))
    one = {key: values[0] for key, values in settings.items()}
    assert one["stricthostkeychecking"] == "true"
    assert one["exitonforwardfailure"] == "yes"
    assert one["userknownhostsfile"] == PINNED
    assert one["numberofpasswordprompts"] == "1"
    assert one["streamlocalbindunlink"] == "no"
    assert one["serveraliveinterval"] == "3"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles())
def test_synced_config_keeps_sshwrap_settings_after_a_hostile_config(profile: Profile) -> None:
    """``config sync`` for real: the profile written to a store, synced into a user config
    whose own ``Host *`` tries to undo every safety setting, then read by ``ssh -G``."""
    from sshwrap.store import ProfileStore
    from sshwrap.usecases import sshconfig
    from tests.compile.sshg import _run_g as run_g
    from tests.compile.sshg import parse_g

    facts = HostFacts()
    with tempfile.TemporaryDirectory(prefix="sshwrap-view-") as tmp:
        store = ProfileStore((Path(tmp) / "profiles",))
        store.write_dir.mkdir()
        store.write(profile)
        user_config = Path(tmp) / "ssh" / "config"
        user_config.parent.mkdir(mode=0o700)
        user_config.write_text(HOSTILE_CONFIG)
        sshconfig.sync(store, config_file=user_config, facts=facts)
        settings = parse_g(run_g(["-F", str(user_config), profile.name]))
    _assert_intended(profile, settings, facts)
