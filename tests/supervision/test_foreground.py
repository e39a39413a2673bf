"""The engine in the foreground, as a systemd unit runs it: the one engine of its state dir,
seen and steered by the command line, handing its tunnels over while another engine serves."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from sshwrap.errors import ExitCode
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, Sshd, free_port
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    eventually,
    process_gone,
    read_banner_through,
    record_of,
)

pytestmark = pytest.mark.sshd


def _sshwrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)


class Unit:
    """``python -m sshwrap --engine --foreground --up NAME...`` as a unit's ExecStart runs it,
    its stderr (the journal) kept in a file."""

    def __init__(self, journal: Path, *names: str, prefix: tuple[str, ...] = ()) -> None:
        self.journal = journal
        argv = [*prefix, sys.executable, "-m", "sshwrap", "--engine", "--foreground"]
        for name in names:
            argv += ["--up", name]
        with journal.open("ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=out)
        self.pid = self.process.pid

    def text(self) -> str:
        return self.journal.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as systemctl stop sends it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def end(self) -> None:
        if self.process.poll() is None:  # a failed test: stop it as a unit stop would
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def units(tmp_path: Path) -> Iterator[list[Unit]]:
    started: list[Unit] = []
    yield started
    for unit in started:
        unit.end()


def _up_in(paths: StatePaths, name: str, engine_pid: int) -> bool:
    record = state.read_record(paths, name)
    return record is not None and record.phase == "up" and record.verified \
        and record.supervisor_pid == engine_pid and state.live_process(record) is not None


def _engine_pid(paths: StatePaths) -> int:
    return int(daemon.request(paths, {"op": "ping"}, timeout=10)["pid"])


def _tunnel(write_profile: ProfileWriter, banner_server: BannerServer, name: str) -> int:
    port = free_port()
    write_profile(name, [{"type": "local", "listen": f"127.0.0.1:{port}",
                          "to": f"127.0.0.1:{banner_server.port}"}])
    return port


def _alpha_in_a_detached_engine(paths: StatePaths, write_profile: ProfileWriter,
                                banner_server: BannerServer) -> int:
    """The tunnel alpha up, started by ``up``: the pid of the detached engine running it."""
    _tunnel(write_profile, banner_server, "alpha")
    assert _sshwrap("up", "alpha").returncode == 0
    return _engine_pid(paths)


def _no_process_of(pid: int) -> bool:
    """``pid`` is gone and none of its children is left behind."""
    return process_gone(pid) and not any(
        child.info["ppid"] == pid for child in psutil.process_iter(["ppid"]))


def test_the_foreground_engine_serves_status_events_and_down_from_another_process(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    units: list[Unit], tmp_path: Path,
) -> None:
    ports = {name: _tunnel(write_profile, banner_server, name) for name in ("alpha", "beta")}
    unit = Unit(tmp_path / "journal", "alpha")
    units.append(unit)
    eventually(lambda: _up_in(runtime_paths, "alpha", unit.pid), "alpha up in the unit")
    assert _engine_pid(runtime_paths) == unit.pid  # it is the engine of the state dir
    assert read_banner_through("127.0.0.1", ports["alpha"]) == (BANNER, ECHO)

    shown = _sshwrap("status", "alpha", "--json")
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)[0]
    assert (row["state"], row["mode"], row["supervisor_pid"]) == ("up", "engine", unit.pid)

    follower = subprocess.Popen([sys.executable, "-m", "sshwrap", "events", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert follower.stdout is not None
        eventually(lambda: daemon.request(runtime_paths, {"op": "ping"},
                                          timeout=10)["followers"] == 1, "the follower")
        # up from the user's shell goes to the unit's engine: there is only one.
        assert _sshwrap("up", "beta").returncode == 0
        assert record_of(runtime_paths, "beta").supervisor_pid == unit.pid
        seen = _events_until(follower.stdout, "beta", "up")
        assert ("beta", "up") in seen
        done = _sshwrap("down", "alpha")
        assert done.returncode == 0, done.stderr
        assert ("alpha", "down") in _events_until(follower.stdout, "alpha", "down")
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(30)
    assert state.read_record(runtime_paths, "alpha") is None
    # Idle is normal for a unit: down --all stops the tunnels, not the engine.
    assert _sshwrap("down", "--all").returncode == 0
    assert state.recorded_names(runtime_paths) == []
    assert unit.process.poll() is None and _engine_pid(runtime_paths) == unit.pid

    assert unit.stop() == 0
    assert _no_process_of(unit.pid)
    assert "alpha: starting -> up" in unit.text()  # its journal tells the state changes


def _events_until(stream: IO[str], name: str, to_state: str) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    while (name, to_state) not in seen:
        line = stream.readline()
        assert line, f"the follower ended before {name} was {to_state}: {seen}"
        event = json.loads(line)
        seen.append((event["name"], event["to_state"]))
    return seen


def test_two_units_share_one_engine_and_the_second_takes_over(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    units: list[Unit], tmp_path: Path,
) -> None:
    ports = {name: _tunnel(write_profile, banner_server, name) for name in ("alpha", "beta")}
    first = Unit(tmp_path / "first", "alpha")
    units.append(first)
    eventually(lambda: _up_in(runtime_paths, "alpha", first.pid), "alpha up in the first")
    second = Unit(tmp_path / "second", "beta")
    units.append(second)

    # The second hands beta to the engine that runs, and waits: one engine process.
    eventually(lambda: _up_in(runtime_paths, "beta", first.pid), "beta up in the first")
    assert second.process.poll() is None and _engine_pid(runtime_paths) == first.pid
    assert read_banner_through("127.0.0.1", ports["beta"]) == (BANNER, ECHO)
    old_client = record_of(runtime_paths, "beta").pid

    assert first.stop() == 0  # its tunnels stop with it: beta too, which it ran

    eventually(lambda: _up_in(runtime_paths, "beta", second.pid), "beta up in the second")
    assert _engine_pid(runtime_paths) == second.pid
    assert record_of(runtime_paths, "beta").pid != old_client
    assert state.read_record(runtime_paths, "alpha") is None
    assert read_banner_through("127.0.0.1", ports["beta"]) == (BANNER, ECHO)
    assert _no_process_of(first.pid)
    assert "exited: serving the state dir" in second.text()

    assert second.stop() == 0
    assert _no_process_of(second.pid)
    assert state.recorded_names(runtime_paths) == []


def test_a_detached_engine_keeps_its_tunnels_and_runs_the_units_until_it_stops(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    units: list[Unit], tmp_path: Path,
) -> None:
    for name in ("alpha", "beta"):
        _tunnel(write_profile, banner_server, name)
    assert _sshwrap("up", "alpha").returncode == 0
    before = record_of(runtime_paths, "alpha")
    detached = _engine_pid(runtime_paths)

    unit = Unit(tmp_path / "journal", "alpha", "beta")
    units.append(unit)

    eventually(lambda: _up_in(runtime_paths, "beta", detached), "beta up in the detached engine")
    eventually(lambda: "alpha: runs already" in unit.text(), "the unit found alpha running")
    after = record_of(runtime_paths, "alpha")
    assert (after.pid, after.supervisor_pid) == (before.pid, before.supervisor_pid)  # no bounce
    assert _engine_pid(runtime_paths) == detached and unit.process.poll() is None

    # Stopped while waiting: the engine that runs them stops the unit's tunnels, and runs on.
    assert unit.stop() == 0
    assert state.recorded_names(runtime_paths) == []
    assert process_gone(before.pid)
    assert _engine_pid(runtime_paths) == detached


class SlowRelay:
    """A TCP relay to ``upstream`` that waits ``delay`` seconds before it connects each client:
    a start that stays in flight that long."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.set()
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn:
            if self.closing.wait(self.delay):
                return
            with socket.create_connection(("127.0.0.1", self.upstream)) as upstream:
                back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
                back.start()
                _pump(conn, upstream)
                back.join(10)

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture
def slow_relay(sshd: Sshd) -> Iterator[SlowRelay]:
    """The sandbox sshd behind a relay that takes 3 s to connect, its host key trusted there."""
    relay = SlowRelay(sshd.port, delay=3.0)
    sshd.client.trust("127.0.0.1", relay.port, sshd.host_public_key)
    yield relay
    relay.close()
    sshd.client.forget("127.0.0.1", relay.port)


def test_a_unit_stopped_while_its_tunnel_is_being_handed_over_leaves_it_stopped(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    units: list[Unit], slow_relay: SlowRelay,
) -> None:
    detached = _alpha_in_a_detached_engine(runtime_paths, write_profile, banner_server)
    port = free_port()
    write_profile("slow", [{"type": "local", "listen": f"127.0.0.1:{port}",
                            "to": f"127.0.0.1:{banner_server.port}"}], port=slow_relay.port)
    unit = Unit(runtime_paths.root.parent / "journal", "slow")  # beside the state dir
    units.append(unit)
    assert slow_relay.accepted.wait(60), "the unit never handed its tunnel over"
    time.sleep(0.5)  # the engine's ssh is connecting: the start is in flight

    assert unit.stop() == 0

    # Whichever reached the engine first, the start or the stop: nothing of it runs.
    assert "slow" not in state.recorded_names(runtime_paths)
    assert not any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in psutil.net_connections("tcp"))
    assert _engine_pid(runtime_paths) == detached
    assert record_of(runtime_paths, "alpha").phase == "up"  # the engine's own runs on


def test_the_unit_takes_over_when_the_detached_engine_exits(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    units: list[Unit], tmp_path: Path,
) -> None:
    detached = _alpha_in_a_detached_engine(runtime_paths, write_profile, banner_server)
    unit = Unit(tmp_path / "journal", "alpha")
    units.append(unit)
    eventually(lambda: "alpha: runs already" in unit.text(), "the unit found alpha running")

    assert _sshwrap("down", "--all").returncode == 0  # the detached engine exits when idle

    eventually(lambda: _up_in(runtime_paths, "alpha", unit.pid), "alpha up in the unit")
    assert process_gone(detached)
    assert unit.stop() == 0
    assert _no_process_of(unit.pid)


def test_a_fatal_failure_ends_the_unit_with_its_code_and_status_keeps_it(
    runtime_paths: StatePaths, write_profile: ProfileWriter, units: list[Unit],
    tmp_path: Path,
) -> None:
    write_profile("nokey", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
                  host_key="SHA256:" + "A" * 43)
    unit = Unit(tmp_path / "journal", "nokey")
    units.append(unit)

    assert unit.process.wait(60) == ExitCode.AUTH
    shown = _sshwrap("status", "nokey", "--json")
    row = json.loads(shown.stdout)[0]
    assert (row["state"], row["failure_code"]) == ("failed", int(ExitCode.AUTH)), row
    assert row["last_failure"] and row["last_failure"] in unit.text()
    assert _sshwrap("down", "nokey").returncode == 0


@pytest.mark.parametrize("args", [["--up", "../../etc/x"], ["--up"], ["--wait", "-1"],
                                  ["--what"]])
def test_bad_arguments_are_refused_in_one_line_and_nothing_is_made(
    args: list[str], tmp_path: Path,
) -> None:
    env = {**os.environ, "SSHWRAP_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "sshwrap", "--engine", "--foreground", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr.startswith("sshwrap: error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.netns
def test_the_network_watch_runs_in_the_foreground_engine(
    runtime_paths: StatePaths, profiles_dir: Path, units: list[Unit], tmp_path: Path,
) -> None:
    """In a network namespace of its own, with its sshd: an address that appears there is a
    network change the unit's engine notices and re-verifies its tunnel for."""
    import tomli_w

    from sshwrap.netlab import can_run
    from sshwrap.sandbox import ClientIdentity, Sshd

    reason = can_run()
    if reason:
        pytest.skip(reason)
    netns = f"sshwrap-fg-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        with Sshd(tmp_path / "sshd", ClientIdentity(tmp_path / "client"), netns=netns) as sshd:
            (profiles_dir / "inside.toml").write_text(tomli_w.dumps({
                "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                "ssh_config_file": str(sshd.client.ssh_config),
                "forward": [{"type": "local", "listen": 2222, "to": "127.0.0.1:22"}]}))
            unit = Unit(tmp_path / "journal", "inside", prefix=("ip", "netns", "exec", netns))
            units.append(unit)
            eventually(lambda: "inside: starting -> up" in unit.text(), "the tunnel up")

            subprocess.run(["ip", "-n", netns, "addr", "add", "10.9.9.9/32", "dev", "lo"],
                           check=True)

            done = ": 1 tunnel(s) and 0 shared connection(s) re-verified, 0 restarted"

            def rechecked() -> bool:
                return any(line.startswith("the network changed: an address appeared")
                           and line.endswith(done)
                           for line in (ln.split(": ", 1)[-1] for ln in unit.text().splitlines()))

            eventually(rechecked, "the engine re-verified the tunnel after the change")
            assert unit.stop() == 0
            assert state.recorded_names(runtime_paths) == []
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


@pytest.mark.parametrize("mode", ["process", "a-mode-of-a-later-version", ""])
def test_a_record_of_an_old_unit_or_unknown_mode_is_shown_by_status(
    mode: str, runtime_paths: StatePaths, write_profile: ProfileWriter,
) -> None:
    """A unit of an earlier version ran ``sshwrap supervise NAME --foreground`` and recorded
    ``process``; a record may name a mode this version does not know. Neither breaks status:
    the dead supervisor's tunnel is shown failed, with the reason kept."""
    write_profile("old", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}])
    dead = subprocess.Popen(["true"])
    dead.wait()
    state.write_record(runtime_paths.ensure(), state.TunnelRecord(
        name="old", pid=dead.pid, create_time=0.0, argv=("ssh", "-N"), profile_hash="",
        client="ssh", started_at=0.0, forwards=(), log_path=str(runtime_paths.log("old")),
        supervisor_pid=dead.pid, supervisor_create_time=0.0, phase="up", mode=mode,
        supervisor_argv=(sys.executable, "-m", "sshwrap", "supervise", "old", "--foreground")))

    for _ in range(2):
        shown = _sshwrap("status", "old", "--json")
        assert shown.returncode == ExitCode.UNHEALTHY, shown.stderr
        row = json.loads(shown.stdout)[0]
        assert row["state"] == "failed" and "ended without 'sshwrap down'" in row["last_failure"]
    assert _sshwrap("down", "old").returncode == 0
