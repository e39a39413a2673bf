"""What a start really runs: the client command compiled from a profile and its launch spec,
compared exactly with tests/golden/launch/ (one argument per line)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import Client, Profile
from sshwrap.core.parse import parse_profile
from tests.compile.golden import check_golden

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "launch"
FACTS = HostFacts(ipv6_loopback=True)
STATE = "/home/u/.local/state/sshwrap"
FP = "SHA256:" + "A" * 43
FP2 = "SHA256:" + "B" * 43
PW_ENV = "DB_PW"  # the name of the variable, not a password
PIPE = "/dev/fd/7"  # where plink reads the password: a pipe, never a file
DB = {"host": "db.example", "user": "app", "port": 2222,
      "forward": [{"type": "local", "listen": 5432, "to": "localhost:5432"}]}


def _profile(name: str, **keys: object) -> Profile:
    return parse_profile(name, {**DB, **keys}, source=f"{name}.toml")


def _tunnel(name: str, **spec: Any) -> LaunchSpec:
    """What the runtime puts in a tunnel's spec: its log and its client config."""
    return LaunchSpec(log_path=f"{STATE}/logs/{name}.log",
                      client_config=f"{STATE}/client/{name}.conf", **spec)


CASES: dict[str, tuple[Profile, LaunchSpec]] = {
    # A key (or the agent): batch mode, every prompt fails.
    "key": (_profile("key", identity_file="~/.ssh/id_ed25519",
                     ssh_config_file="~/.ssh/work_config"), _tunnel("key")),
    # A password answered through askpass: one prompt per hop, passwords allowed.
    "password": (_profile("password", auth="password", password_env=PW_ENV),
                 _tunnel("password", answers_prompts=True)),
    # A key's passphrase through askpass: never sent to a server as a password.
    "passphrase": (_profile("passphrase", identity_file="~/.ssh/id_ed25519"),
                   _tunnel("passphrase", answers_prompts=True)),
    # A key, and the server's questions (a one-time code) for a person: keyboard-interactive
    # on, one attempt, passwords still off.
    "question": (_profile("question", identity_file="~/.ssh/id_ed25519"),
                 _tunnel("question", answers_prompts=True, answers_questions=True)),
    # A pinned host key: sshwrap's own known_hosts with only that key, before the profile's.
    "pinned": (_profile("pinned", host_key=FP, options={"ConnectTimeout": 5}),
               _tunnel("pinned", pinned_known_hosts=f"{STATE}/known_hosts/pinned")),
    # Jump hosts: their options come from the client config, ssh's only -F.
    "jumps": (_profile("jumps", jump=["ops@bastion:2200", "inner"], compression=True),
              _tunnel("jumps")),
    # A shared connection's master: no forwards, a control socket.
    "shared": (replace(_profile("shared", share_connection=True), forwards=()),
               _tunnel("shared", control_path=f"{STATE}/ctl/0123456789abcdef")),
    # A tunnel's own client: a ControlMaster on its private socket, so that its remote
    # forwards are proven over its own connection (runtime/supervise/farside.py).
    "remote": (_profile("remote", forward=[{"type": "remote", "listen": 8081,
                                            "to": "localhost:8888"}]),
               _tunnel("remote", control_path=f"{STATE}/ctl/t0123456789abcde")),
    # A check's login: no forwards, a time limit, the command true instead of -N.
    "login": (replace(_profile("login", auth="password", password_env=PW_ENV), forwards=()),
              LaunchSpec(log_path="/tmp/sshwrap-check-x/auth.log", answers_prompts=True,
                         client_config=f"{STATE}/client/login.conf", connect_timeout=10,
                         command=("true",))),
    # plink with a pinned key and jump hosts whose keys come from known_hosts.
    "plink": (_profile("plink", client="plink", host_key=FP, jump=["bastion", "inner:2200"]),
              LaunchSpec(hop_host_keys=((FP2,), (FP, FP2)))),
    # plink with a password from a pipe.
    "plink-password": (_profile("plink-password", client="plink", host_key=FP,
                                auth="password", password_env=PW_ENV),
                       LaunchSpec(answers_prompts=True, password_file=PIPE)),
}


def _compiled(profile: Profile, spec: LaunchSpec) -> list[str]:
    if profile.client is Client.PLINK:
        return compile_plink(profile, FACTS, program="/usr/bin/plink", spec=spec)
    return compile_ssh(profile, FACTS, program="/usr/bin/ssh", spec=spec)


@pytest.mark.parametrize("case", sorted(CASES))
def test_launch_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    profile, spec = CASES[case]
    check_golden(GOLDEN / f"{case}.argv", "\n".join(_compiled(profile, spec)) + "\n", request)


def test_every_option_a_start_sets_comes_before_the_profiles() -> None:
    """ssh keeps the first value of an option: a profile cannot undo what a start sets."""
    for profile, spec in CASES.values():
        if profile.client is not Client.SSH:
            continue
        argv = _compiled(profile, spec)
        first_of_profile = next((i for i, a in enumerate(argv) if a in ("-p", "-l", "-i")),
                                len(argv))
        assert all(i < first_of_profile for i, a in enumerate(argv)
                   if a.startswith(("BatchMode=", "NumberOfPasswordPrompts=",
                                    "UserKnownHostsFile=", "ConnectTimeout=10")))


def test_without_a_spec_nothing_of_a_start_is_compiled() -> None:
    """``sshwrap compile`` shows the profile's own command (tests/golden/*.ssh)."""
    profile, _ = CASES["password"]
    plain = compile_ssh(profile, FACTS)
    assert not any(a.startswith(("BatchMode", "NumberOfPasswordPrompts")) for a in plain)
    assert "-E" not in plain and "-v" not in plain
