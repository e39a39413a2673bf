"""The compilers' argv and config shape, and what each target refuses."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import Profile
from sshwrap.core.parse import parse_profile

FACTS = HostFacts(ipv6_loopback=True)
FP = "SHA256:" + "B" * 43


def _profile(**extra: Any) -> Profile:
    data: dict[str, Any] = {"host": "gw",
                            "forward": [{"type": "local", "listen": 3307, "to": "db:3306"}]}
    data.update(extra)
    return parse_profile("p", data)


def test_ssh_argv_shape() -> None:
    argv = compile_ssh(_profile(user="u", port=2, jump=["j"], compression=True,
                                options={"ConnectTimeout": 5}),
                       FACTS, program="/usr/bin/ssh", spec=LaunchSpec())
    assert argv[:2] == ["/usr/bin/ssh", "-N"]
    assert argv[-2:] == ["--", "gw"]
    assert "-L 127.0.0.1:3307:db:3306 -L '[::1]:3307:db:3306'" in shlex.join(argv)
    assert "StrictHostKeyChecking=yes" in argv and "ExitOnForwardFailure=yes" in argv
    # ssh keeps the first value of an option: sshwrap's own, then the runtime's, then the
    # profile's, whose options come last before the forwards.
    order = [argv.index(a) for a in ("StrictHostKeyChecking=yes", "BatchMode=yes", "-p",
                                     "ConnectTimeout=5", "-L")]
    assert order == sorted(order)


def test_keepalive_off() -> None:
    argv = compile_ssh(_profile(keepalive=0), FACTS)
    assert "ServerAliveInterval=0" in argv
    assert not any(a.startswith("ServerAliveCountMax") for a in argv)


def test_plink_argv_and_one_flag_per_forward() -> None:
    argv = compile_plink(_profile(user="u", port=2, compression=True, host_key=FP,
                                  identity_file="k.ppk", client="plink"), FACTS)
    assert argv == ["plink", "-ssh", "-N", "-batch", "-P", "2", "-l", "u", "-i", "k.ppk", "-C",
                    "-hostkey", FP, "-L", "127.0.0.1:3307:db:3306", "gw"]


def test_plink_jump_chain_names_every_hop() -> None:
    argv = compile_plink(_profile(jump=["a@j1:2200", "j2"], port=2022), FACTS)
    proxy = argv[argv.index("-proxycmd") + 1]
    outer = shlex.split(proxy)
    assert outer[-3:] == ["-nc", "gw:2022", "j2"]
    inner = shlex.split(outer[outer.index("-proxycmd") + 1])
    assert inner[-3:] == ["-nc", "j2:22", "j1"] and inner[3:5] == ["-P", "2200"]


@pytest.mark.parametrize(("extra", "key"), [
    ({"ssh_config_file": "/etc/c"}, "ssh_config_file"),
    ({"options": {"Ciphers": "x"}}, "options.Ciphers"),
    ({"keepalive": 5}, "keepalive"),
    ({"host_key": "accept-new"}, "host_key"),
    ({"identity_file": "~/.ssh/id_ed25519"}, "identity_file"),
    ({"share_connection": True}, "share_connection"),
    ({"forward": [{"type": "local", "listen": "/tmp/s", "to": "db:1"}]}, "forward[0]"),
])
def test_plink_refuses_what_it_cannot_express(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(NotExpressible) as caught:
        compile_plink(_profile(**extra), FACTS)
    assert caught.value.key == key and "plink" in str(caught.value)


def test_config_block() -> None:
    block = compile_config(_profile(user="u", jump=["j"], description="db tunnel",
                                    options={"ciphers": "aes256-ctr"}), FACTS)
    lines = block.splitlines()
    assert lines[:3] == ["# db tunnel", "Host p", "    ExitOnForwardFailure yes"]
    assert "    LocalForward [::1]:3307 db:3306" in lines
    assert lines[-1] == "    Ciphers aes256-ctr"  # the profile's options last, spelled as ssh does
    assert lines.index("    SessionType none") < lines.index("    HostName gw")


def test_config_doubles_the_percent_of_a_scope_id() -> None:
    block = compile_config(_profile(host="fe80::1%eth0"), FACTS)
    assert '    HostName "fe80::1%%eth0"' in block.splitlines()


def test_config_refuses_a_config_file() -> None:
    with pytest.raises(NotExpressible):
        compile_config(_profile(ssh_config_file="/etc/c"), FACTS)


@pytest.mark.parametrize(("change", "key"), [
    ({"host": "gw;touch x"}, "host"),
    ({"host": "::1%h'$(touch x)'"}, "host"),
    ({"user": "-oProxyCommand=x"}, "user"),
    ({"identity_file": "k $(x)"}, "identity_file"),
    ({"options": (("Ciphers", "a\nProxyCommand x"),)}, "options.Ciphers"),
    ({"description": "a\nHost *"}, "description"),
])
def test_compilers_refuse_values_that_were_never_parsed(change: dict[str, Any], key: str) -> None:
    from dataclasses import replace

    profile = replace(_profile(), **change)
    for compile_to in (compile_ssh, compile_plink, compile_config):
        with pytest.raises(NotExpressible) as caught:
            compile_to(profile, FACTS)
        assert caught.value.key == key
