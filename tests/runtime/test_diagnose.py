"""core.diagnose over logs recorded from real ssh and plink runs (data/record_logs.py)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from sshwrap.core.diagnose import (
    Diagnosis,
    FailureKind,
    Segment,
    channel_failures,
    describe_channel,
    diagnose_log,
    log_lines,
    open_failures,
)
from sshwrap.core.model import AuthMethod, Profile
from sshwrap.core.parse import parse_profile
from sshwrap.errors import AuthFailed, ConnectionFailed, ExitCode, ForwardingFailed

LOGS = Path(__file__).parent / "data" / "logs"


def _case(name: str) -> tuple[str, Profile]:
    profile = parse_profile("db", tomllib.loads((LOGS / f"{name}.toml").read_text()))
    return (LOGS / f"{name}.log").read_text(), profile


def _diagnose(name: str) -> tuple[Diagnosis, Profile]:
    text, profile = _case(name)
    diagnosis = diagnose_log(text, profile)
    assert diagnosis is not None, f"{name}: no diagnosis"
    return diagnosis, profile


def _tunnel_host(profile: Profile) -> str:
    return f"tunnel host ({profile.host}:{profile.port})"


EXPECTED = [
    ("ssh_host_key_unknown", FailureKind.HOST_KEY_UNKNOWN, Segment.GATEWAY, AuthFailed),
    ("ssh_host_key_changed", FailureKind.HOST_KEY_CHANGED, Segment.GATEWAY, AuthFailed),
    ("ssh_auth_failed", FailureKind.AUTH_FAILED, Segment.GATEWAY, AuthFailed),
    ("ssh_connection_refused", FailureKind.CONNECTION_REFUSED, Segment.GATEWAY, ConnectionFailed),
    ("ssh_name_not_resolved", FailureKind.NAME_NOT_RESOLVED, Segment.GATEWAY, ConnectionFailed),
    ("ssh_timed_out", FailureKind.TIMED_OUT, Segment.GATEWAY, ConnectionFailed),
    ("ssh_banner_timeout", FailureKind.TIMED_OUT, Segment.GATEWAY, ConnectionFailed),
    ("ssh_network_unreachable", FailureKind.UNREACHABLE, Segment.GATEWAY, ConnectionFailed),
    ("ssh_no_route", FailureKind.UNREACHABLE, Segment.GATEWAY, ConnectionFailed),
    ("ssh_local_port_taken", FailureKind.PORT_TAKEN, Segment.CLIENT, ForwardingFailed),
    ("ssh_remote_port_taken", FailureKind.REMOTE_PORT_BUSY, Segment.GATEWAY, ForwardingFailed),
    ("ssh_forwarding_disabled_remote", FailureKind.REMOTE_FORWARD_FORBIDDEN,
     Segment.SERVER_POLICY, ForwardingFailed),
    ("ssh_forwarding_disabled_local", FailureKind.FORWARDING_DISABLED, Segment.SERVER_POLICY,
     ForwardingFailed),
    ("ssh_forwarding_disabled_dynamic", FailureKind.FORWARDING_DISABLED, Segment.SERVER_POLICY,
     ForwardingFailed),
    ("ssh_forwarding_remote_only", FailureKind.FORWARDING_DISABLED, Segment.SERVER_POLICY,
     ForwardingFailed),
    ("ssh_policy_permitopen_local", FailureKind.FORWARDING_DISABLED, Segment.SERVER_POLICY,
     ForwardingFailed),
    ("ssh_policy_permitopen_dynamic", FailureKind.FORWARDING_DISABLED, Segment.SERVER_POLICY,
     ForwardingFailed),
    ("ssh_policy_disableforwarding_local", FailureKind.FORWARDING_DISABLED,
     Segment.SERVER_POLICY, ForwardingFailed),
    ("ssh_policy_disableforwarding_remote", FailureKind.REMOTE_FORWARD_FORBIDDEN,
     Segment.SERVER_POLICY, ForwardingFailed),
    ("ssh_policy_local_only_remote", FailureKind.REMOTE_FORWARD_FORBIDDEN,
     Segment.SERVER_POLICY, ForwardingFailed),
    ("ssh_policy_permitlisten_remote", FailureKind.REMOTE_FORWARD_FORBIDDEN,
     Segment.SERVER_POLICY, ForwardingFailed),
    ("ssh_target_refused", FailureKind.TARGET_UNREACHABLE, Segment.SERVER, ForwardingFailed),
    ("ssh_jump_cannot_reach", FailureKind.JUMP_CANNOT_REACH_NEXT_HOP, Segment.GATEWAY,
     ConnectionFailed),
    ("ssh_jump_refused", FailureKind.CONNECTION_REFUSED, Segment.GATEWAY, ConnectionFailed),
    ("ssh_jump_host_key_unknown", FailureKind.HOST_KEY_UNKNOWN, Segment.GATEWAY, AuthFailed),
    ("ssh_closed_by_remote", FailureKind.CLOSED_BY_REMOTE, Segment.GATEWAY, ConnectionFailed),
    ("plink_host_key_unknown", FailureKind.HOST_KEY_UNKNOWN, Segment.GATEWAY, AuthFailed),
    ("plink_host_key_changed", FailureKind.HOST_KEY_CHANGED, Segment.GATEWAY, AuthFailed),
    ("plink_auth_failed", FailureKind.AUTH_FAILED, Segment.GATEWAY, AuthFailed),
    ("plink_connection_refused", FailureKind.CONNECTION_REFUSED, Segment.GATEWAY,
     ConnectionFailed),
    ("plink_name_not_resolved", FailureKind.NAME_NOT_RESOLVED, Segment.GATEWAY,
     ConnectionFailed),
    ("plink_local_port_taken", FailureKind.PORT_TAKEN, Segment.CLIENT, ForwardingFailed),
    ("plink_remote_port_taken", FailureKind.REMOTE_PORT_BUSY, Segment.GATEWAY, ForwardingFailed),
    ("plink_target_refused", FailureKind.TARGET_UNREACHABLE, Segment.SERVER, ForwardingFailed),
]


def test_every_recorded_log_has_a_profile_and_a_case() -> None:
    recorded = {p.stem for p in LOGS.glob("*.log")}
    assert recorded == {name for name, *_ in EXPECTED}
    assert all((LOGS / f"{name}.toml").is_file() for name in recorded)


@pytest.mark.parametrize(("name", "kind", "segment", "error_class"), EXPECTED,
                         ids=[e[0] for e in EXPECTED])
def test_kind_segment_and_exit_code(name: str, kind: FailureKind, segment: Segment,
                                    error_class: type) -> None:
    diagnosis, profile = _diagnose(name)
    assert (diagnosis.kind, diagnosis.segment) == (kind, segment)
    error = diagnosis.error()
    assert type(error) is error_class
    assert error.message.startswith(f"{profile.name}: ")
    assert error.hint


def test_exit_codes_follow_the_documented_table() -> None:
    assert _diagnose("ssh_auth_failed")[0].error().exit_code is ExitCode.AUTH
    assert _diagnose("ssh_local_port_taken")[0].error().exit_code is ExitCode.FORWARDING
    assert _diagnose("ssh_timed_out")[0].error().exit_code is ExitCode.CONNECTION


@pytest.mark.parametrize("name", ["ssh_host_key_unknown", "plink_host_key_unknown"])
def test_unknown_host_key_shows_fingerprint_and_how_to_accept(name: str) -> None:
    diagnosis, profile = _diagnose(name)
    fingerprint = diagnosis.details["fingerprint"]
    assert fingerprint.startswith("SHA256:")
    assert fingerprint in diagnosis.message
    assert diagnosis.hop == _tunnel_host(profile)
    if name.startswith("ssh"):
        assert f"sshwrap trust {profile.name}" in diagnosis.hint
        assert f"ssh-keyscan -p {profile.port} {profile.host}" in diagnosis.hint
    else:
        assert f'host_key = "{fingerprint}"' in diagnosis.hint


@pytest.mark.parametrize("name", ["ssh_host_key_changed", "plink_host_key_changed"])
def test_changed_host_key_warns_and_never_offers_to_accept(name: str) -> None:
    diagnosis, _ = _diagnose(name)
    assert diagnosis.message.startswith("WARNING")
    assert "CHANGED" in diagnosis.message
    assert diagnosis.details["fingerprint"].startswith("SHA256:")
    for acceptance in ("sshwrap trust", "ssh-keyscan", "host_key =", "ssh-keygen -R"):
        assert acceptance not in diagnosis.hint
    assert "never accepts" in diagnosis.hint


def test_changed_key_fingerprint_is_the_one_the_server_presents() -> None:
    text, _ = _case("ssh_host_key_changed")
    diagnosis, _ = _diagnose("ssh_host_key_changed")
    presented = next(ln for ln in text.splitlines() if "Server host key:" in ln).split()[-1]
    assert diagnosis.details["fingerprint"] == presented


def test_port_taken_names_the_port() -> None:
    diagnosis, profile = _diagnose("ssh_local_port_taken")
    port = profile.forwards[0].listen.port  # type: ignore[union-attr]
    assert diagnosis.details == {"port": str(port), "address": "127.0.0.1"}
    assert f"sshwrap ports {port}" in diagnosis.hint
    assert diagnosis.hop is None


@pytest.mark.parametrize("name", ["ssh_remote_port_taken", "plink_remote_port_taken",
                                  "ssh_forwarding_disabled_remote"])
def test_refused_remote_forward_names_the_listen_spec(name: str) -> None:
    diagnosis, profile = _diagnose(name)
    port = profile.forwards[0].listen.port  # type: ignore[union-attr]
    assert diagnosis.details["listen"] == f"localhost:{port}"
    assert diagnosis.hop == _tunnel_host(profile)


@pytest.mark.parametrize("name", ["ssh_connection_refused", "ssh_name_not_resolved",
                                  "ssh_timed_out", "plink_connection_refused"])
def test_connection_failures_name_the_tunnel_host(name: str) -> None:
    diagnosis, profile = _diagnose(name)
    assert diagnosis.hop == _tunnel_host(profile)
    assert diagnosis.details["host"] == profile.host


def test_refused_jump_host_is_named_as_the_jump() -> None:
    diagnosis, profile = _diagnose("ssh_jump_refused")
    assert diagnosis.hop == f"jump host 1 ({profile.jump[0].render()})"


def test_jump_that_cannot_reach_the_tunnel_host() -> None:
    diagnosis, profile = _diagnose("ssh_jump_cannot_reach")
    assert diagnosis.hop == f"jump host 1 ({profile.jump[0].render()})"
    assert diagnosis.details["next_hop"] == _tunnel_host(profile)
    assert diagnosis.details["reason"] == "Connection refused"


def test_unknown_key_of_a_jump_host_names_the_jump() -> None:
    # Recorded in the namespace lab: the ProxyJump child runs without the parent's -o
    # options, so its unknown key shows only as "Host key verification failed.".
    diagnosis, profile = _diagnose("ssh_jump_host_key_unknown")
    assert diagnosis.hop == f"jump host 1 ({profile.jump[0].render()})"
    assert diagnosis.details["fingerprint"].startswith("SHA256:")


def test_target_unreachable_names_the_target() -> None:
    diagnosis, profile = _diagnose("ssh_target_refused")
    assert diagnosis.details["target"] == profile.forwards[0].to.render()  # type: ignore[union-attr]
    assert "Connection refused" in diagnosis.details["reason"]


def test_carriage_returns_are_stripped() -> None:
    text, profile = _case("ssh_auth_failed")
    with_cr = text.replace("\n", "\r\n")
    diagnosis = diagnose_log(with_cr, profile)
    assert diagnosis is not None
    assert diagnosis == diagnose_log(text, profile)
    assert "\r" not in diagnosis.message


def test_a_healthy_log_has_no_diagnosis() -> None:
    text, profile = _case("ssh_target_refused")
    healthy = "\n".join(ln for ln in text.splitlines() if "open failed" not in ln)
    assert diagnose_log(healthy, profile) is None
    assert diagnose_log("", profile) is None


def test_open_failures_lists_server_side_failures_only() -> None:
    text, _ = _case("ssh_target_refused")
    failures = open_failures(text.replace("\n", "\r\n"))
    assert len(failures) == 2
    assert all(f.startswith("channel ") and "open failed: connect failed" in f for f in failures)
    assert open_failures(_case("plink_target_refused")[0])
    assert open_failures(_case("ssh_auth_failed")[0]) == []


def test_diagnose_is_pure() -> None:
    code = ("import sys, sshwrap.core.diagnose; "
            "bad = {'subprocess', 'psutil', 'pexpect', 'socket'} & set(sys.modules); "
            "print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize(("name", "setting"), [
    ("ssh_forwarding_disabled_remote", "AllowTcpForwarding"),
    ("ssh_policy_disableforwarding_remote", "DisableForwarding"),
    ("ssh_policy_local_only_remote", "AllowTcpForwarding"),
    ("ssh_policy_permitlisten_remote", "PermitListen"),
])
def test_forbidden_remote_forward_names_the_setting_forward_and_host(name: str,
                                                                     setting: str) -> None:
    diagnosis, profile = _diagnose(name)
    forward = profile.forwards[0].describe()
    assert forward in diagnosis.message
    assert _tunnel_host(profile) in diagnosis.message
    assert setting in diagnosis.hint
    assert profile.host in diagnosis.hint
    assert "busy" not in diagnosis.message + diagnosis.hint


@pytest.mark.parametrize("name", ["ssh_remote_port_taken", "plink_remote_port_taken"])
def test_busy_remote_port_is_not_called_forbidden(name: str) -> None:
    diagnosis, profile = _diagnose(name)
    assert "busy" in diagnosis.message
    assert profile.forwards[0].describe() in diagnosis.message
    for setting in ("AllowTcpForwarding", "PermitListen", "DisableForwarding"):
        assert setting not in diagnosis.hint


@pytest.mark.parametrize("name", ["ssh_forwarding_disabled_local", "ssh_policy_permitopen_local",
                                  "ssh_policy_disableforwarding_local",
                                  "ssh_policy_permitopen_dynamic"])
def test_prohibited_channel_is_server_policy_naming_forward_and_settings(name: str) -> None:
    diagnosis, profile = _diagnose(name)
    assert profile.forwards[0].describe() in diagnosis.message
    for setting in ("AllowTcpForwarding", "PermitOpen", "DisableForwarding"):
        assert setting in diagnosis.hint
    assert "'to' address" not in diagnosis.hint


def test_channel_failures_name_forward_and_target() -> None:
    text, profile = _case("ssh_policy_permitopen_dynamic")
    failures = channel_failures(log_lines(text))
    assert len(failures) == 1
    assert failures[0].prohibited
    assert failures[0].listen_port == profile.forwards[0].listen.port  # type: ignore[union-attr]
    assert failures[0].target is not None and failures[0].target.startswith("127.0.0.1:")
    assert describe_channel(profile, failures[0]).startswith(profile.forwards[0].describe())
    text, profile = _case("ssh_target_refused")
    failures = channel_failures(log_lines(text))
    assert [f.target for f in failures] == [profile.forwards[0].to.render()] * 2  # type: ignore[union-attr]
    assert not failures[0].prohibited
    assert describe_channel(profile, failures[0]) == profile.forwards[0].describe()


def test_password_profile_gets_no_key_advice() -> None:
    text, profile = _case("ssh_auth_failed")
    as_password = replace(profile, auth=AuthMethod.PASSWORD, password_env="DB_PASSWORD")  # noqa: S106
    diagnosis = diagnose_log(text, as_password)
    assert diagnosis is not None
    # The recorded server accepts only keys: a password user is told so, not about agents.
    assert "authorized_keys" not in diagnosis.hint and "agent" not in diagnosis.hint
    assert "does not take passwords" in diagnosis.hint
    text = text.replace("(publickey)", "(publickey,password)")
    diagnosis = diagnose_log(text, as_password)
    assert diagnosis is not None
    assert "$DB_PASSWORD" in diagnosis.hint and "authorized_keys" not in diagnosis.hint
