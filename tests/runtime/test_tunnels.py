"""up, down, restart and status against the real sandbox sshd, with bytes through every forward."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sshwrap.errors import ExitCode
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, Sshd, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import (
    Action,
    TunnelOutcome,
    TunnelState,
    down,
    restart,
    status,
    up,
)
from tests.runtime.tunnel_helpers import (
    ProfileWriter,
    assert_failure_kept,
    eventually,
    read_banner_through,
    socks5_banner,
)

pytestmark = pytest.mark.sshd
BANNER = b"220 sshwrap-demo ready\r\n"
ECHO = b"ping through the tunnel\n"


def _ssh_processes(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and \
                any(marker in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_local_forward_verified_on_both_families_then_down(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    listen = free_port()
    write_profile("web", [{"type": "local", "listen": listen,
                           "to": f"127.0.0.1:{banner_server.port}"}])

    report = up(store, ["web"], paths=runtime_paths)

    assert report.exit_code is ExitCode.OK, report.outcomes[0].error
    outcome = report.outcomes[0]
    assert outcome.action is Action.STARTED
    assert {f.listen for f in outcome.forwards} == {f"127.0.0.1:{listen}", f"[::1]:{listen}"}
    assert read_banner_through("127.0.0.1", listen) == (BANNER, ECHO)
    assert read_banner_through("::1", listen) == (BANNER, ECHO)
    record = state.read_record(runtime_paths, "web")
    assert record is not None and record.verified and record.pid == outcome.pid
    assert oct(runtime_paths.root.stat().st_mode & 0o777) == "0o700"

    again = up(store, ["web"], paths=runtime_paths)
    assert again.outcomes[0].action is Action.ALREADY_UP
    assert again.outcomes[0].pid == outcome.pid

    shown = status(store, ["web"], paths=runtime_paths)
    assert shown.exit_code is ExitCode.OK
    row = json.loads(json.dumps(shown.to_json()))[0]
    assert row["name"] == "web" and row["state"] == "up" and row["pid"] == outcome.pid
    assert all(f["healthy"] for f in row["forwards"])
    assert {"type", "listen", "to", "healthy"} <= set(row["forwards"][0])

    stopped = down(["web"], paths=runtime_paths)
    assert stopped.outcomes[0].action is Action.STOPPED
    assert state.read_record(runtime_paths, "web") is None
    assert not psutil.pid_exists(outcome.pid) or \
        psutil.Process(outcome.pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", listen), timeout=2):
        pass
    assert down(["web"], paths=runtime_paths).outcomes[0].action is Action.NOT_RUNNING
    assert status(store, ["web"], paths=runtime_paths).tunnels[0].state is TunnelState.DOWN


def test_changed_profile_is_reported_and_restart_applies_it(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    forwards = [{"type": "local", "listen": free_port(), "to": f"127.0.0.1:{banner_server.port}"}]
    write_profile("db", forwards)
    first = up(store, ["db"], paths=runtime_paths).outcomes[0]
    assert first.action is Action.STARTED, first.error

    write_profile("db", forwards, compression=True)
    changed = up(store, ["db"], paths=runtime_paths).outcomes[0]
    assert changed.action is Action.CHANGED and "restart" in changed.message
    assert status(store, ["db"], paths=runtime_paths).tunnels[0].changed

    again = restart(store, ["db"], paths=runtime_paths).outcomes[0]
    assert again.action is Action.STARTED and again.pid != first.pid
    assert "-C" in state.read_record(runtime_paths, "db").argv  # type: ignore[union-attr]


def test_remote_forward_is_confirmed_by_the_log_and_carries_bytes(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    remote_port = free_port()
    write_profile("back", [{"type": "remote", "listen": remote_port,
                            "to": f"127.0.0.1:{banner_server.port}"}])

    outcome = up(store, ["back"], paths=runtime_paths).outcomes[0]

    assert outcome.action is Action.STARTED, outcome.error
    # Bound and proven from the far side: connections made there on both loopbacks arrive.
    assert outcome.forwards[0].detail == (f"proven from the tunnel host (127.0.0.1) on "
                                          f"127.0.0.1:{remote_port} and [::1]:{remote_port}")
    # The sandbox sshd runs on this machine, so its end of the remote forward is reachable.
    assert read_banner_through("127.0.0.1", remote_port) == (BANNER, ECHO)


def test_dynamic_forward_speaks_socks5(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    proxy = free_port()
    write_profile("socks", [{"type": "dynamic", "listen": proxy}])

    outcome = up(store, ["socks"], paths=runtime_paths).outcomes[0]

    assert outcome.action is Action.STARTED, outcome.error
    assert socks5_banner(proxy, "127.0.0.1", banner_server.port) == (BANNER, ECHO)


def test_port_held_on_ipv4_only_names_the_holder_and_leaves_nothing(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    port = free_port()
    write_profile("squat", [{"type": "local", "listen": port,
                             "to": f"127.0.0.1:{banner_server.port}"}])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()

        outcome = up(store, ["squat"], paths=runtime_paths).outcomes[0]

    assert outcome.action is Action.FAILED and outcome.exit_code is ExitCode.FORWARDING
    assert outcome.error is not None
    assert f"pid {os.getpid()}" in outcome.error.message
    assert f"127.0.0.1:{port}" in outcome.error.message
    assert "listen = " in outcome.error.hint
    assert_failure_kept(runtime_paths, "squat", ExitCode.FORWARDING)
    assert _ssh_processes(str(runtime_paths.log("squat"))) == []


def test_unreachable_host_is_a_connection_failure(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
) -> None:
    write_profile("nowhere", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
                  port=free_port())

    outcome = up(store, ["nowhere"], paths=runtime_paths).outcomes[0]

    assert outcome.exit_code is ExitCode.CONNECTION, outcome.error
    assert_failure_kept(runtime_paths, "nowhere", ExitCode.CONNECTION)


def _client_config(tmp_path: Path, key: Path, known_hosts: Path) -> Path:
    config = tmp_path / "other_ssh_config"
    config.write_text(
        "Host *\n"
        f"    IdentityFile {key}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n    GlobalKnownHostsFile /dev/null\n"
        "    PasswordAuthentication no\n    KbdInteractiveAuthentication no\n")
    return config


def test_unknown_host_key_is_an_auth_failure(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter, sshd: Sshd,
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.touch()
    config = _client_config(tmp_path, sshd.client.key, empty)
    write_profile("stranger", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
                  ssh_config_file=str(config))

    outcome = up(store, ["stranger"], paths=runtime_paths).outcomes[0]

    assert outcome.exit_code is ExitCode.AUTH, outcome.error
    assert empty.read_text() == ""  # the unknown key was not accepted


def test_unauthorised_key_is_an_auth_failure(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter, sshd: Sshd,
    tmp_path: Path,
) -> None:
    other_key = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    config = _client_config(tmp_path, other_key, sshd.client.known_hosts)
    write_profile("intruder", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
                  ssh_config_file=str(config))

    outcome = up(store, ["intruder"], paths=runtime_paths).outcomes[0]

    assert outcome.exit_code is ExitCode.AUTH, outcome.error


def test_remote_forward_on_a_busy_server_port_is_refused(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    port = free_port()
    write_profile("refused", [{"type": "remote", "listen": port,
                               "to": f"127.0.0.1:{banner_server.port}"}])
    # sshd binds a remote "localhost" forward on every loopback family, succeeding if any
    # binds: hold the port on both so that the server has to refuse.
    holders = [socket.socket(socket.AF_INET, socket.SOCK_STREAM),
               socket.socket(socket.AF_INET6, socket.SOCK_STREAM)]
    try:
        holders[0].bind(("127.0.0.1", port))
        holders[1].bind(("::1", port))
        for holder in holders:
            holder.listen()

        outcome = up(store, ["refused"], paths=runtime_paths).outcomes[0]
    finally:
        for holder in holders:
            holder.close()

    assert outcome.exit_code is ExitCode.FORWARDING, outcome.error
    assert outcome.error is not None and str(port) in outcome.error.message
    assert _ssh_processes(str(runtime_paths.log("refused"))) == []


def test_kill_9_shows_failed_until_up_or_down(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    # restart = "no" runs the client once, never restarted: a killed client stays dead.
    write_profile("fragile", [{"type": "local", "listen": free_port(),
                               "to": f"127.0.0.1:{banner_server.port}"}], restart="no")
    outcome = up(store, ["fragile"], paths=runtime_paths).outcomes[0]
    assert outcome.pid is not None

    os.kill(outcome.pid, signal.SIGKILL)

    eventually(lambda: status(store, ["fragile"], paths=runtime_paths).tunnels[0].state
               is TunnelState.FAILED, "status shows the killed tunnel failed")
    after = status(store, ["fragile"], paths=runtime_paths)
    assert after.exit_code is ExitCode.UNHEALTHY
    # A failure is state: the next status still shows it, with its reason, until down.
    again = status(store, ["fragile"], paths=runtime_paths).tunnels[0]
    assert again.state is TunnelState.FAILED and again.detail == after.tunnels[0].detail
    assert f"pid {outcome.pid}" in (again.last_failure or "")
    assert "SIGKILL" in (again.last_failure or "")
    assert again.failed_at is not None and again.failure_code is not None
    assert down(["fragile"], paths=runtime_paths).outcomes[0].action is Action.CLEANED
    assert status(store, ["fragile"], paths=runtime_paths).tunnels[0].state is TunnelState.DOWN


def test_killed_child_left_as_zombie_counts_as_dead(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
) -> None:
    write_profile("zombie", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
                  restart="no")
    # A client of this process recorded as the tunnel's (tunnels run in the engine; a zombie
    # is left only by a parent that has not reaped its child yet, as this test does).
    child = subprocess.Popen(["sleep", "60"])
    proc = psutil.Process(child.pid)
    state.write_record(runtime_paths, state.TunnelRecord(
        name="zombie", pid=child.pid, create_time=proc.create_time(), argv=("sleep", "60"),
        profile_hash="x", client="ssh", started_at=0.0, forwards=(),
        log_path=str(runtime_paths.log("zombie")), verified=True, phase="up"))
    assert status(store, ["zombie"], paths=runtime_paths).tunnels[0].state is TunnelState.UP
    outcome = TunnelOutcome("zombie", Action.STARTED, child.pid)
    os.kill(child.pid, signal.SIGKILL)  # not reaped: our child stays a zombie
    killed = psutil.Process(outcome.pid or 0)
    for _ in range(500):  # the kill is delivered asynchronously
        if killed.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.01)
    assert killed.status() == psutil.STATUS_ZOMBIE

    assert status(store, ["zombie"], paths=runtime_paths).tunnels[0].state is TunnelState.FAILED
    assert not psutil.pid_exists(outcome.pid)  # status reaped it


def test_reused_pid_is_never_signalled(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
) -> None:
    write_profile("ghost", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}])
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        real = psutil.Process(stranger.pid)
        for create_time, argv in (
            (real.create_time() + 7.0, ("sleep", "60")),  # same command, other start time
            (real.create_time(), ("ssh", "-N", "--", "127.0.0.1")),  # same start, other command
        ):
            state.write_record(runtime_paths, state.TunnelRecord(
                name="ghost", pid=stranger.pid, create_time=create_time, argv=argv,
                profile_hash="x", client="ssh", started_at=0.0, forwards=(),
                log_path=str(runtime_paths.log("ghost")), verified=True))
            assert status(store, ["ghost"], paths=runtime_paths).tunnels[0].state \
                is TunnelState.FAILED
            state.write_record(runtime_paths, state.TunnelRecord(
                name="ghost", pid=stranger.pid, create_time=create_time, argv=argv,
                profile_hash="x", client="ssh", started_at=0.0, forwards=(),
                log_path=str(runtime_paths.log("ghost")), verified=True))
            assert down(["ghost"], paths=runtime_paths).outcomes[0].action is Action.CLEANED
            assert up(store, ["ghost"], paths=runtime_paths) is not None
            down(["ghost"], paths=runtime_paths)
            assert stranger.poll() is None, "sshwrap signalled a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_up_all_and_tag_start_in_parallel(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    for i in range(4):
        write_profile(f"t{i}", [{"type": "local", "listen": free_port(),
                                 "to": f"127.0.0.1:{banner_server.port}"}],
                      tags=["even" if i % 2 == 0 else "odd"])
    seen: set[str] = set()

    tagged = up(store, tag="even", paths=runtime_paths, progress=lambda n, d, t: seen.add(n))
    assert sorted(o.name for o in tagged.outcomes) == ["t0", "t2"]
    assert seen == {"t0", "t2"}
    everything = up(store, all_profiles=True, paths=runtime_paths)
    actions = {o.name: o.action for o in everything.outcomes}
    assert actions == {"t0": Action.ALREADY_UP, "t1": Action.STARTED,
                       "t2": Action.ALREADY_UP, "t3": Action.STARTED}
    assert len(down(all_tunnels=True, paths=runtime_paths).outcomes) == 4
    assert state.recorded_names(runtime_paths) == []


def test_twenty_concurrent_cli_up_and_down_keep_one_process(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    profiles_dir: Path,
) -> None:
    write_profile("race", [{"type": "local", "listen": free_port(),
                            "to": f"127.0.0.1:{banner_server.port}"}])
    env = {**os.environ, "SSHWRAP_STATE_DIR": str(runtime_paths.root),
           "SSHWRAP_PROFILES": str(profiles_dir)}
    commands = [[sys.executable, "-m", "sshwrap", "up" if i % 2 == 0 else "down", "race"]
                for i in range(20)]
    runs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for c in commands]
    results = [(r.wait(60), r.stderr.read().decode()) for r in runs]  # type: ignore[union-attr]
    for run in runs:
        run.stdout.close()  # type: ignore[union-attr]
        run.stderr.close()  # type: ignore[union-attr]

    assert all(code == 0 for code, _ in results), results
    running = _ssh_processes(str(runtime_paths.log("race")))
    assert len(running) <= 1
    record = state.read_record(runtime_paths, "race")
    if record is None:
        assert running == []
    else:
        assert state.live_process(record) is not None
        assert [p.pid for p in running] == [record.pid]
    # One more of each from a clean line: the state must still be usable.
    assert subprocess.run(commands[0], env=env, check=False).returncode == 0
    assert len(_ssh_processes(str(runtime_paths.log("race")))) == 1
    assert subprocess.run(commands[1], env=env, check=False).returncode == 0
    assert _ssh_processes(str(runtime_paths.log("race"))) == []


def test_status_of_a_hundred_tunnels_scans_sockets_once(
    store: ProfileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = StatePaths(tmp_path / "hundred")
    stand_in = subprocess.Popen(["sleep", "60"])
    # Their port is held by another process (this one): which one, only a scan tells.
    squatter = socket.create_server(("127.0.0.1", 0))
    try:
        proc = psutil.Process(stand_in.pid)
        while proc.cmdline() != ["sleep", "60"]:  # the exec may still be under way
            pass
        port = squatter.getsockname()[1]
        forward = state.ExpectedForward("local", f"127.0.0.1:{port}", "db:1", host="127.0.0.1",
                                        port=port)
        for i in range(100):
            state.write_record(paths, state.TunnelRecord(
                name=f"n{i:03d}", pid=stand_in.pid, create_time=proc.create_time(),
                argv=tuple(proc.cmdline()), profile_hash="x", client="ssh", started_at=0.0,
                forwards=(forward,), log_path="/dev/null", verified=True))
        calls = []
        real_scan = psutil.net_connections

        def counting_scan(kind: str = "inet") -> list:  # type: ignore[type-arg]
            calls.append(kind)
            return real_scan(kind)

        monkeypatch.setattr(psutil, "net_connections", counting_scan)

        report = status(store, paths=paths)

        assert len(report.tunnels) == 100
        assert {t.state for t in report.tunnels} == {TunnelState.UP}, [
            (t.name, t.detail) for t in report.tunnels if t.state is not TunnelState.UP]
        assert not any(t.healthy for t in report.tunnels)  # the squatter holds their port
        assert report.exit_code is ExitCode.UNHEALTHY
        assert len(calls) == 1
    finally:
        squatter.close()
        stand_in.kill()
        stand_in.wait()


def test_a_tunnel_whose_ports_nothing_listens_on_is_checked_without_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sshwrap.runtime.observe.verify import ListenerView

    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # free again once closed
    forward = state.ExpectedForward("local", f"127.0.0.1:{port}", "db:1", host="127.0.0.1",
                                    port=port)
    calls: list[str] = []
    monkeypatch.setattr(psutil, "net_connections", lambda kind="inet": calls.append(kind) or [])

    checks = ListenerView().check([forward], os.getpid())

    assert [(c.healthy, c.detail) for c in checks] == [(False, "not listening")]
    assert calls == []


def test_deadline_passed_is_not_ready_and_stops_the_client(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("slow", [{"type": "local", "listen": free_port(),
                            "to": f"127.0.0.1:{banner_server.port}"}])

    # No ssh authenticates within a millisecond: the deadline always passes first.
    outcome = up(store, ["slow"], wait=0.001, paths=runtime_paths).outcomes[0]

    assert outcome.exit_code is ExitCode.NOT_READY, outcome.error
    assert outcome.error is not None and "not ready after" in outcome.error.message
    assert_failure_kept(runtime_paths, "slow", ExitCode.NOT_READY)
    assert _ssh_processes(str(runtime_paths.log("slow"))) == []


def test_down_of_a_tunnel_that_never_ran_makes_nothing(state_dir: Path, profiles_dir: Path,
                                                       ) -> None:
    """No folder, record, log or lock for a name that finds nothing to stop: through the
    command line (no engine runs), and in a state dir where another tunnel ran."""
    (profiles_dir / "db.toml").write_text('host = "example.com"\n')
    done = subprocess.run([sys.executable, "-m", "sshwrap", "down", "db"], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "not-running" in done.stdout
    assert not state_dir.exists()

    paths = StatePaths(state_dir)
    with state.name_lock(paths, "web"):  # another tunnel's start made the folders
        pass
    before = sorted(p.relative_to(state_dir) for p in state_dir.rglob("*"))
    assert down(["db", "db2"], paths=paths).outcomes[0].action is Action.NOT_RUNNING
    assert sorted(p.relative_to(state_dir) for p in state_dir.rglob("*")) == before


def test_the_engine_takes_its_control_folder_outside_the_state_dir_with_it(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    """pytest's state dir is too long for control sockets: they live in a folder of the temp
    dir. A killed client leaves its socket there; once the engine exits, nothing is left."""
    from sshwrap.runtime.engine import daemon
    from sshwrap.runtime.supervise import shared

    write_profile("web", [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                           "to": f"127.0.0.1:{banner_server.port}"}], restart="no")
    assert up(store, ["web"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    folder = shared.control_dir(runtime_paths, create=False)
    assert not folder.is_relative_to(runtime_paths.root)
    record = state.read_record(runtime_paths, "web")
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)  # its control socket stays behind
    eventually(lambda: status(store, ["web"], paths=runtime_paths).tunnels[0].state
               is TunnelState.FAILED, "the tunnel failed")
    assert any(entry.is_socket() for entry in folder.iterdir())
    down(["web"], paths=runtime_paths)
    daemon.shutdown(runtime_paths)
    assert not folder.exists()
