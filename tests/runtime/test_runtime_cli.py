"""The runtime commands through the real CLI entry point, and plink against the same sshd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, Sshd, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, down, up
from tests.runtime.tunnel_helpers import ProfileWriter, assert_failure_kept, read_banner_through

pytestmark = pytest.mark.sshd


def _sshwrap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_cli_up_status_json_down(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    listen = free_port()
    write_profile("api", [{"type": "local", "listen": listen,
                           "to": f"127.0.0.1:{banner_server.port}"}])

    started = _sshwrap("up", "api")
    assert started.returncode == 0, started.stderr
    assert "api: started" in started.stdout

    shown = _sshwrap("status", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [r["name"] for r in rows] == ["api"]
    assert rows[0]["state"] == "up" and isinstance(rows[0]["pid"], int)
    assert {f["listen"] for f in rows[0]["forwards"]} == {f"127.0.0.1:{listen}",
                                                          f"[::1]:{listen}"}
    assert all(f["healthy"] and f["type"] == "local" for f in rows[0]["forwards"])
    assert "api" in _sshwrap("status").stdout

    stopped = _sshwrap("down", "--all")
    assert stopped.returncode == 0 and "api: stopped" in stopped.stdout
    assert _sshwrap("status", "api").returncode == 8  # a named tunnel that is down


def test_cli_port_taken_exit_5_names_the_holder(
    runtime_paths: StatePaths, write_profile: ProfileWriter,
) -> None:
    port = free_port()
    write_profile("taken", [{"type": "local", "listen": port, "to": "127.0.0.1:9"}])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = _sshwrap("up", "taken")
    assert result.returncode == 5
    assert f"sshwrap: error: taken: local forward cannot listen on 127.0.0.1:{port}" \
        in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert "hint: stop that process or choose another listen port" in result.stderr
    assert_failure_kept(runtime_paths, "taken", 5)


def test_cli_bad_input_changes_nothing(runtime_paths: StatePaths, profiles_dir: Path) -> None:
    unknown = _sshwrap("up", "nosuch")
    assert unknown.returncode == 2 and "no profile named 'nosuch'" in unknown.stderr
    assert _sshwrap("up").returncode == 2
    assert _sshwrap("down", "../etc").returncode == 2
    nothing = _sshwrap("up", "--all")
    assert nothing.returncode == 0 and "no tunnel" in nothing.stdout
    (profiles_dir / "broken.toml").write_text('host = "h"\n[[forward]]\ntype = "local"\n')
    broken = _sshwrap("up", "--all")
    assert broken.returncode == 2
    assert "broken.toml: forward[0].listen: is required" in broken.stderr
    assert not runtime_paths.root.exists() or state.recorded_names(runtime_paths) == []


def test_demo_runs_end_to_end_and_leaves_nothing() -> None:
    before = _sshd_sandboxes()
    result = _sshwrap("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "greeting '220 sshwrap-demo ready'" in result.stdout
    assert "demo: started" in result.stdout and "up" in result.stdout
    assert _sshd_sandboxes() == before


def _sshd_sandboxes() -> set[int]:
    """The demo's processes: its sshd (by command line) and its resident supervisor (by the
    state dir in its environment)."""
    import psutil

    found = set()
    for proc in psutil.process_iter(["cmdline", "environ"]):
        state_dir = (proc.info["environ"] or {}).get("SSHWRAP_STATE_DIR", "")
        if "sshwrap-demo-" in state_dir or any(
                "sshwrap-demo-" in a for a in proc.info["cmdline"] or []):
            found.add(proc.pid)
    return found


@pytest.mark.plink
def test_plink_tunnel_local_and_remote(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter, sshd: Sshd,
    *, banner_server: BannerServer, tmp_path: Path,
) -> None:
    if subprocess.run(["sh", "-c", "command -v plink && command -v puttygen"],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("plink is not installed (apt-get install putty-tools)")
    ppk = tmp_path / "client.ppk"
    subprocess.run(["puttygen", str(sshd.client.key), "-O", "private", "-o", str(ppk)],
                   check=True, capture_output=True)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{sshd.host_key}.pub"], capture_output=True, text=True,
        check=True).stdout.split()[1]
    listen, remote = free_port(), free_port()
    write_profile("putty", [
        {"type": "local", "listen": listen, "to": f"127.0.0.1:{banner_server.port}"},
        {"type": "remote", "listen": remote, "to": f"127.0.0.1:{banner_server.port}"},
    ], client="plink", identity_file=str(ppk), host_key=fingerprint, ssh_config_file=None,
        keepalive=0)

    outcome = up(store, ["putty"], paths=runtime_paths).outcomes[0]

    assert outcome.action is Action.STARTED, outcome.error
    assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
    assert read_banner_through("127.0.0.1", remote)[0].startswith(b"220")
    assert down(["putty"], paths=runtime_paths).outcomes[0].action is Action.STOPPED


@pytest.mark.plink
def test_plink_port_taken_is_caught_without_exit_on_forward_failure(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter, sshd: Sshd,
    tmp_path: Path,
) -> None:
    ppk = tmp_path / "client.ppk"
    subprocess.run(["puttygen", str(sshd.client.key), "-O", "private", "-o", str(ppk)],
                   check=True, capture_output=True)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{sshd.host_key}.pub"], capture_output=True, text=True,
        check=True).stdout.split()[1]
    port = free_port()
    write_profile("putty2", [{"type": "local", "listen": port, "to": "127.0.0.1:9"}],
                  client="plink", identity_file=str(ppk), host_key=fingerprint,
                  ssh_config_file=None, keepalive=0)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        outcome = up(store, ["putty2"], paths=runtime_paths).outcomes[0]
    assert outcome.error is not None and outcome.exit_code == 5
    assert f"pid {os.getpid()}" in outcome.error.message
    assert_failure_kept(runtime_paths, "putty2", 5)
