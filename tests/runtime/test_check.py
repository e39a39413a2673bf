"""``check`` against real sshd: each segment's verdict, about now, with the hint that fits."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sshwrap.runtime.client.hostkeys import fingerprint
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.check import run_check
from sshwrap.usecases.check_steps import StepStatus
from tests.auth.auth_helpers import PasswordServer, throwaway_password_server

pytestmark = pytest.mark.sshd


def _write_profile(directory: Path, name: str, sshd: Sshd, **overrides: object) -> None:
    data: dict[str, object] = {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "ssh_config_file": str(sshd.client.ssh_config), "restart": "no",
        "forward": [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
    }
    data.update(overrides)
    (directory / f"{name}.toml").write_text(tomli_w.dumps(data))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, check=False, env=env, timeout=120)


def _cli_check(name: str, profiles_dir: Path, env: dict[str, str] | None = None,
               ) -> tuple[int, dict[str, Any]]:
    out = _cli("check", name, "--json", "--profiles", str(profiles_dir), env=env)
    return out.returncode, json.loads(out.stdout)


def _steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in report["steps"]}


def _up(name: str, profiles_dir: Path, env: dict[str, str] | None = None) -> None:
    done = _cli("up", name, "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 0, done.stderr


def test_path_passes_up_to_a_tunnel_that_does_not_run(sshd: Sshd, profiles_dir: Path,
                                                      state_dir: Path) -> None:
    _write_profile(profiles_dir, "db", sshd)
    code, report = _cli_check("db", profiles_dir)
    steps = _steps(report)
    assert code == 8
    for name in ("ssh installed", "profile valid"):
        assert (steps[name]["status"], steps[name]["segment"]) == ("pass", "client")
    for name in ("resolve tunnel host (127.0.0.1)", "connect to tunnel host (127.0.0.1)",
                 "authenticate"):
        assert (steps[name]["status"], steps[name]["segment"]) == ("pass", "gateway")
    running = steps["tunnel running"]
    assert (running["status"], running["ok"]) == ("fail", False)
    assert running["hint"] == "start it: sshwrap up db"
    assert set(running) == {"name", "segment", "status", "ok", "detail", "hint"}


def test_unknown_name_is_bad_input(profiles_dir: Path, state_dir: Path) -> None:
    done = _cli("check", "nosuch", "--profiles", str(profiles_dir))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "nosuch" in done.stderr.splitlines()[0]


def test_invalid_profile_is_bad_input(profiles_dir: Path, state_dir: Path) -> None:
    (profiles_dir / "bad.toml").write_text('host = "x"\nport = 99999\n')
    done = _cli("check", "bad", "--json", "--profiles", str(profiles_dir))
    assert done.returncode == 2
    assert "bad.toml" in done.stderr and "port" in done.stderr
    assert done.stdout == ""


def test_closed_port_fails_at_the_tcp_step(sshd: Sshd, profiles_dir: Path,
                                           state_dir: Path) -> None:
    _write_profile(profiles_dir, "db", sshd, port=free_port())
    code, report = _cli_check("db", profiles_dir)
    steps = _steps(report)
    assert code == 8
    connect = steps["connect to tunnel host (127.0.0.1)"]
    assert (connect["status"], connect["segment"]) == ("fail", "gateway")
    assert "Connection refused" in connect["detail"] and connect["hint"]
    assert steps["authenticate"]["status"] == "skip"


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
    assert (auth.status, auth.segment) == (StepStatus.FAIL, "gateway")
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
    jump = f"jump host 1 ({sshd.user}@127.0.0.1:{sshd.port})"
    assert (steps[f"connect to {jump}"].status, steps[f"connect to {jump}"].segment) == \
        (StepStatus.PASS, "hop 1")
    assert steps["connect to tunnel host (localhost)"].status is StepStatus.SKIP
    assert steps["authenticate through the jump hosts"].status is StepStatus.PASS


def test_far_end_verdict_is_about_now_and_old_failures_are_history(
        sshd: Sshd, profiles_dir: Path, runtime_paths: StatePaths,
        banner_server: BannerServer) -> None:
    good, broken, target = free_port(), free_port(), free_port()
    _write_profile(profiles_dir, "web", sshd, forward=[
        {"type": "local", "listen": good, "to": f"127.0.0.1:{banner_server.port}",
         "probe": "banner"},
        {"type": "local", "listen": broken, "to": f"127.0.0.1:{target}", "probe": "banner"},
    ])
    _up("web", profiles_dir)
    code, report = _cli_check("web", profiles_dir)
    steps = _steps(report)
    assert code == 8
    assert steps["tunnel running"]["status"] == "pass"
    assert steps[f"local [::1]:{good} listens here (owned by the tunnel)"]["status"] == "pass"
    banner = steps[f"far end of local {good} -> 127.0.0.1:{banner_server.port} (banner)"]
    assert (banner["status"], banner["segment"]) == ("pass", "server side")
    assert banner["detail"] == "greeting: 220 sshwrap-demo ready"
    far = steps[f"far end of local {broken} -> 127.0.0.1:{target} (banner)"]
    assert (far["status"], far["segment"]) == ("fail", "server side")
    assert f"cannot reach 127.0.0.1:{target} for local {broken} -> 127.0.0.1:{target}" \
        in far["detail"]
    assert "Connection refused" in far["detail"]
    # The failure this check's own probe caused is its verdict, not an extra log failure.
    assert steps["log since this check began"]["status"] == "pass"
    # Repaired: the service starts; the same tunnel passes, and the old lines are history.
    with BannerServer(port=target) as service:
        code, report = _cli_check("web", profiles_dir)
        assert code == 0, report
        steps = _steps(report)
        assert steps[f"far end of local {broken} -> 127.0.0.1:{service.port} (banner)"][
            "detail"] == "greeting: 220 sshwrap-demo ready"
        log_step = steps["log since this check began"]
        assert log_step["status"] == "pass"
        assert "history" in log_step["detail"] and f"local {broken}" in log_step["detail"]


def test_forbidden_forwarding_is_server_policy(profiles_dir: Path, runtime_paths: StatePaths,
                                               tmp_path: Path, sshd: Sshd,
                                               banner_server: BannerServer) -> None:
    with Sshd(tmp_path / "nofwd", sshd.client,
              extra_config={"AllowTcpForwarding": "no"}).start() as strict:
        listen = free_port()
        _write_profile(profiles_dir, "db", strict, forward=[
            {"type": "local", "listen": listen, "to": f"127.0.0.1:{banner_server.port}"}])
        _up("db", profiles_dir)  # the listener comes up; channels are refused
        code, report = _cli_check("db", profiles_dir)
        far = _steps(report)[f"far end of local {listen} -> 127.0.0.1:{banner_server.port} (tcp)"]
        assert code == 8
        assert (far["status"], far["segment"]) == ("fail", "server policy")
        assert f"local {listen} -> 127.0.0.1:{banner_server.port}" in far["detail"]
        assert "tunnel host (127.0.0.1:" in far["detail"]
        for setting in ("AllowTcpForwarding", "PermitOpen", "DisableForwarding"):
            assert setting in far["hint"]
        assert "'to'" not in far["hint"]
        assert _cli("down", "db").returncode == 0


def test_socks_probe_asks_the_tunnel_host_for_itself_and_probe_target_overrides(
        sshd: Sshd, profiles_dir: Path, runtime_paths: StatePaths) -> None:
    socks, closed = free_port(), free_port()
    _write_profile(profiles_dir, "proxy", sshd, forward=[{"type": "dynamic", "listen": socks}])
    _up("proxy", profiles_dir)
    code, report = _cli_check("proxy", profiles_dir)
    far = _steps(report)[f"far end of dynamic {socks} -> SOCKS (socks)"]
    assert code == 0, report
    assert far["detail"].startswith(f"CONNECT 127.0.0.1:{sshd.port} via ")
    assert "the address ssh reached the tunnel host at" in far["detail"]
    _write_profile(profiles_dir, "proxy", sshd, forward=[
        {"type": "dynamic", "listen": socks, "probe_target": f"127.0.0.1:{closed}"}])
    code, report = _cli_check("proxy", profiles_dir)
    far = _steps(report)[f"far end of dynamic {socks} -> SOCKS (socks)"]
    assert code == 8
    assert (far["status"], far["segment"]) == ("fail", "server side")
    assert f"127.0.0.1:{closed}" in far["detail"]


def test_not_running_tells_why_its_last_start_failed(sshd: Sshd, profiles_dir: Path,
                                                     runtime_paths: StatePaths) -> None:
    busy = free_port()
    holders = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        holder = socket.socket(family)
        holder.bind((host, busy))
        holder.listen(1)
        holders.append(holder)
    try:
        _write_profile(profiles_dir, "back", sshd, restart="on-failure", forward=[
            {"type": "remote", "listen": busy, "to": "127.0.0.1:9"}])
        started = _cli("up", "back", "--profiles", str(profiles_dir))
        assert started.returncode == 5, started.stderr
        code, report = _cli_check("back", profiles_dir)
    finally:
        for holder in holders:
            holder.close()
    running = _steps(report)["tunnel running"]
    assert code == 8
    assert running["status"] == "fail"
    assert running["detail"].startswith("not running: its last start (")
    assert "busy" in running["detail"] and "forbid" not in running["detail"]
    assert f"remote {busy} -> 127.0.0.1:9" in running["detail"]
    assert "all steps passed" not in report["summary"]


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordServer]:
    """A throwaway user with a password, and an sshd that takes only passwords (root only)."""
    with throwaway_password_server(tmp_path_factory, "swck", client_settings="",
                                   sshd_settings={"PubkeyAuthentication": "no"}) as server:
        yield server

def _password_profile(server: PasswordServer, **keys: object) -> dict[str, object]:
    data: dict[str, object] = {
        "host": "127.0.0.1", "port": server.sshd.port, "user": server.user,
        "auth": "password", "password_env": "TUNNEL_PW", "restart": "no",
        "ssh_config_file": str(server.ssh_config),
        "forward": [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}]}
    data.update(keys)
    return data


def test_password_profile_logs_in_as_up_does(password_server: PasswordServer,
                                             profiles_dir: Path, state_dir: Path) -> None:
    (profiles_dir / "pw.toml").write_text(tomli_w.dumps(_password_profile(password_server)))
    env = dict(os.environ, TUNNEL_PW=password_server.password)
    code, report = _cli_check("pw", profiles_dir, env)
    auth = _steps(report)["authenticate"]
    assert auth["status"] == "pass", auth
    assert "password (from $TUNNEL_PW)" in auth["detail"]
    env["TUNNEL_PW"] = "wrong-" + password_server.password
    code, report = _cli_check("pw", profiles_dir, env)
    auth = _steps(report)["authenticate"]
    assert (code, auth["status"], auth["segment"]) == (8, "fail", "gateway")
    assert "$TUNNEL_PW" in auth["hint"]
    assert "authorized_keys" not in auth["hint"] and "agent" not in auth["hint"]


def test_plink_password_check_keeps_out_of_the_users_putty_files(
        password_server: PasswordServer, profiles_dir: Path,
        state_dir: Path, tmp_path: Path) -> None:
    if shutil.which("plink") is None:
        pytest.skip("plink is not installed (scripts/dev installs putty-tools)")
    home = tmp_path / "home"
    home.mkdir()
    pin = fingerprint(password_server.sshd.host_public_key.split()[1])
    data = _password_profile(password_server, client="plink", host_key=pin)
    data.pop("ssh_config_file")
    (profiles_dir / "pl.toml").write_text(tomli_w.dumps(data))
    env = dict(os.environ, TUNNEL_PW=password_server.password, HOME=str(home))
    env.pop("XDG_CONFIG_HOME", None)
    _code, report = _cli_check("pl", profiles_dir, env)
    auth = _steps(report)["authenticate"]
    assert auth["status"] == "pass", auth
    assert not (home / ".putty").exists()
    assert not (home / ".config" / "putty").exists()
    assert (state_dir / "putty").is_dir()


def test_probe_target_is_a_host_and_port_of_local_or_dynamic_forwards() -> None:
    from sshwrap.core.model import TcpAddress
    from sshwrap.core.parse import parse_profile
    from sshwrap.core.unparse import profile_to_mapping
    from sshwrap.errors import InvalidInput

    def forward(**keys: object) -> dict[str, object]:
        return {"host": "gw", "forward": [{"listen": 1080, **keys}]}

    socks = parse_profile("p", forward(type="dynamic", probe_target="10.0.0.1:22"))
    assert socks.forwards[0].probe_target == TcpAddress("10.0.0.1", 22)
    assert profile_to_mapping(socks)["forward"][0]["probe_target"] == "10.0.0.1:22"
    proxy = parse_profile("p", forward(type="local", to="proxy:3128", probe="http",
                                       probe_target="example.org:443"))
    assert proxy.forwards[0].probe_target == TcpAddress("example.org", 443)
    for keys, message in [
        ({"type": "remote", "to": "a:1", "probe_target": "a:1"}, "local or dynamic"),
        ({"type": "local", "to": "a:1", "probe": "banner", "probe_target": "a:1"}, "'http'"),
        ({"type": "dynamic", "probe_target": "/run/x.sock"}, "not a socket path"),
        ({"type": "dynamic", "probe_target": "nohost"}, "host:port"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            parse_profile("p", forward(**keys), source="p.toml")
        [line] = caught.value.lines()
        assert line.startswith("p.toml: forward[0].probe_target: ") and message in line
