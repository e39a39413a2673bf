"""``check`` against the real sshd fixture: reachable host, auth, closed port, bad key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from sshwrap.core.binds import HostFacts
from sshwrap.runtime.check import StepStatus, run_check
from sshwrap.runtime.launch import client_argv, spawn, stop_group
from sshwrap.runtime.paths import StatePaths
from sshwrap.runtime.state import ExpectedForward, TunnelRecord, write_record
from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port
from sshwrap.store import ProfileStore

pytestmark = pytest.mark.sshd


def _write_profile(directory: Path, name: str, sshd: Sshd, **overrides: object) -> None:
    data: dict[str, object] = {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "ssh_config_file": str(sshd.client.ssh_config),
        "forward": [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
    }
    data.update(overrides)
    (directory / f"{name}.toml").write_text(tomli_w.dumps(data))


def _cli_check(name: str, profiles_dir: Path) -> tuple[int, dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "sshwrap", "check", name, "--json",
                          "--profiles", str(profiles_dir)],
                         capture_output=True, text=True, check=False)
    return out.returncode, json.loads(out.stdout)


def _statuses(report: dict[str, object]) -> dict[str, str]:
    steps = report["steps"]
    assert isinstance(steps, list)
    return {step["name"]: step["status"] for step in steps}


def test_reachable_host_and_auth_pass(sshd: Sshd, profiles_dir: Path, state_dir: Path) -> None:
    _write_profile(profiles_dir, "db", sshd)
    code, report = _cli_check("db", profiles_dir)
    statuses = _statuses(report)
    assert code == 0, report
    assert report["ok"] is True
    assert statuses["ssh installed"] == "pass"
    assert statuses["profile valid"] == "pass"
    assert statuses["resolve tunnel host (127.0.0.1)"] == "pass"
    assert statuses["connect to tunnel host (127.0.0.1)"] == "pass"
    assert statuses["authenticate"] == "pass"
    assert statuses["tunnel running"] == "skip"


def test_closed_port_fails_at_the_tcp_step(sshd: Sshd, profiles_dir: Path,
                                           state_dir: Path) -> None:
    _write_profile(profiles_dir, "db", sshd, port=free_port())
    code, report = _cli_check("db", profiles_dir)
    statuses = _statuses(report)
    assert code == 8
    assert statuses["connect to tunnel host (127.0.0.1)"] == "fail"
    assert statuses["authenticate"] == "skip"
    failing = [s for s in report["steps"] if s["status"] == "fail"]  # type: ignore[union-attr]
    assert "Connection refused" in failing[0]["detail"]
    assert failing[0]["hint"]


def test_bad_key_fails_the_auth_step(sshd: Sshd, profiles_dir: Path, state_dir: Path,
                                     tmp_path: Path) -> None:
    stranger = ClientIdentity(tmp_path / "stranger")  # a key sshd does not know
    shutil.copy(sshd.client.known_hosts, stranger.known_hosts)
    _write_profile(profiles_dir, "db", sshd, ssh_config_file=str(stranger.ssh_config))
    report = run_check(ProfileStore((profiles_dir,)), "db", StatePaths(state_dir))
    steps = {s.name: s for s in report.steps}
    assert not report.ok
    assert steps["connect to tunnel host (127.0.0.1)"].status is StepStatus.PASS
    auth = steps["authenticate"]
    assert auth.status is StepStatus.FAIL
    assert "refused authentication" in auth.detail
    assert "authorized_keys" in auth.hint


def test_jump_hosts_after_the_first_are_checked_through_it(sshd: Sshd, profiles_dir: Path,
                                                           state_dir: Path,
                                                           tmp_path: Path) -> None:
    # The same sshd as jump (127.0.0.1) and tunnel host ("localhost": ssh refuses a loop).
    identity = ClientIdentity(tmp_path / "jumper")
    shutil.copy(sshd.client.key, identity.key)
    shutil.copy(sshd.client.key.with_suffix(".pub"), identity.key.with_suffix(".pub"))
    shutil.copy(sshd.client.known_hosts, identity.known_hosts)
    identity.trust("localhost", sshd.port, sshd.host_public_key)
    _write_profile(profiles_dir, "db", sshd, host="localhost",
                   ssh_config_file=str(identity.ssh_config),
                   jump=[f"{sshd.user}@127.0.0.1:{sshd.port}"])
    report = run_check(ProfileStore((profiles_dir,)), "db", StatePaths(state_dir))
    steps = {s.name: s for s in report.steps}
    assert report.ok, [s for s in report.steps if s.status is StepStatus.FAIL]
    jump = f"jump host 1 ({sshd.user}@127.0.0.1:{sshd.port})"
    assert steps[f"connect to {jump}"].status is StepStatus.PASS
    assert steps["connect to tunnel host (localhost)"].status is StepStatus.SKIP
    assert steps["authenticate through the jump hosts"].status is StepStatus.PASS


def test_invalid_profile_fails_and_stops(profiles_dir: Path, state_dir: Path) -> None:
    (profiles_dir / "bad.toml").write_text('host = "x"\nport = 99999\n')
    code, report = _cli_check("bad", profiles_dir)
    assert code == 8
    assert _statuses(report) == {"profile valid": "fail"}


def _start_recorded(profiles_dir: Path, name: str, paths: StatePaths) -> TunnelRecord:
    """Start the profile's tunnel and record it as ``up`` does (without its verification)."""
    from sshwrap.core.binds import expanded_forwards

    profile = ProfileStore((profiles_dir,)).load(name)
    facts = HostFacts()
    paths.ensure()
    log = paths.log(name)
    launched = spawn(name, client_argv(profile, facts, log), log)
    record = TunnelRecord(
        name=name, pid=launched.pid, create_time=launched.create_time, argv=launched.argv,
        profile_hash="test", client="ssh", started_at=time.time(),
        forwards=tuple(ExpectedForward.from_forward(f) for f in expanded_forwards(profile, facts)),
        log_path=str(log), log_offset=launched.log_offset)
    write_record(paths, record)
    return record


def _wait_until(predicate: object, what: str) -> None:
    for _ in range(200):
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_running_tunnel_forwards_far_end_and_log(sshd: Sshd, profiles_dir: Path,
                                                 state_dir: Path,
                                                 banner_server: BannerServer) -> None:
    good, broken = free_port(), free_port()
    _write_profile(profiles_dir, "web", sshd, forward=[
        {"type": "local", "listen": good, "to": f"127.0.0.1:{banner_server.port}",
         "probe": "banner"},
        {"type": "local", "listen": broken, "to": f"127.0.0.1:{free_port()}"},
    ])
    paths = StatePaths(state_dir)
    record = _start_recorded(profiles_dir, "web", paths)
    try:
        def listening() -> bool:
            report = run_check(ProfileStore((profiles_dir,)), "web", paths)
            return all(s.status is StepStatus.PASS for s in report.steps if "listens" in s.name)

        _wait_until(listening, "the forwards to listen")
        report = run_check(ProfileStore((profiles_dir,)), "web", paths)
        steps = {s.name: s for s in report.steps}
        assert steps["tunnel running"].status is StepStatus.PASS
        assert steps[f"local [::1]:{good} listens (owned by the tunnel)"].status is StepStatus.PASS
        banner = steps[f"far end of local {good} -> 127.0.0.1:{banner_server.port} (banner)"]
        assert banner.status is StepStatus.PASS
        assert "220 sshwrap-demo ready" in banner.detail
        far = [s for s in report.steps if s.name.startswith(f"far end of local {broken}")]
        assert far[0].status is StepStatus.FAIL
        assert steps["log has no 'open failed'"].status is StepStatus.FAIL
        assert "open failed" in steps["log has no 'open failed'"].detail
        assert not report.ok
    finally:
        stop_group(record.pid)
