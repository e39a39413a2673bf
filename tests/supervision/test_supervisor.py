"""The supervisor against a real sshd: restarts, fatal failures, stopping, and status truth."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sshwrap.errors import AuthFailed, ConnectionFailed, ExitCode, ForwardingFailed
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.supervise.restart import (
    BACKOFF_CAP,
    BACKOFF_START,
    PROBE_INTERVAL,
    backoff_delay,
    is_fatal,
    is_remote_held,
    wait_for_path,
)
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import TunnelRecord
from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, TunnelState, down, status, up
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    assert_failure_kept,
    eventually,
    process_gone,
    read_banner_through,
    record_of,
)


def _start(store: ProfileStore, paths: StatePaths, name: str) -> TunnelRecord:
    outcome = up(store, [name], paths=paths).outcomes[0]
    assert outcome.action is Action.STARTED, outcome.error
    record = record_of(paths, name)
    assert record.supervised and record.phase == "up"
    assert state.live_supervisor(record) is not None and state.live_process(record) is not None
    return record


# -- pure parts ---------------------------------------------------------------------------


def test_backoff_doubles_from_half_a_second_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, rng) for n in range(1, 12)]
    assert BACKOFF_START * 0.75 <= delays[0] <= BACKOFF_START
    assert all(d <= BACKOFF_CAP for d in delays)
    assert delays[-1] >= BACKOFF_CAP * 0.75
    assert len({round(backoff_delay(3, rng), 6) for _ in range(20)}) > 1  # jittered


def test_fatal_and_remote_held_classification() -> None:
    assert is_fatal(AuthFailed("x"))
    assert not is_fatal(ConnectionFailed("x"))
    assert is_remote_held(ForwardingFailed("t: the server refused remote forward localhost:1"))
    assert not is_remote_held(ForwardingFailed("t: port 1 is already in use"))


def test_wait_for_path_returns_once_a_cut_path_answers_again() -> None:
    with BannerServer() as server:
        # A path that answers throughout is no reason to cut the backoff short.
        assert wait_for_path(("127.0.0.1", server.port), 0.3) is False
    port = free_port()
    revived: list[BannerServer] = []

    def come_back() -> None:
        time.sleep(4 * PROBE_INTERVAL)  # let a few probes fail first
        revived.append(BannerServer(port=port).start())

    helper = threading.Thread(target=come_back)
    helper.start()
    try:
        # The path is down, then answers: the wait ends early, well before the cap.
        assert wait_for_path(("127.0.0.1", port), BACKOFF_CAP) is True
    finally:
        helper.join()
        for server in revived:
            server.stop()


# -- against the sandbox sshd -------------------------------------------------------------


def test_kill_9_of_ssh_is_restored_with_a_new_pid(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    listen = free_port()
    write_profile("sturdy", [{"type": "local", "listen": listen,
                              "to": f"127.0.0.1:{banner_server.port}"}])
    first = _start(store, runtime_paths, "sturdy")

    os.kill(first.pid, signal.SIGKILL)

    def restored() -> bool:
        now = state.read_record(runtime_paths, "sturdy")
        return now is not None and now.pid != first.pid and now.phase == "up"

    eventually(restored, "a new client verified")
    after = record_of(runtime_paths, "sturdy")
    assert after.restarts == 1
    assert after.supervisor_pid == first.supervisor_pid
    assert "SIGKILL" in (after.last_failure or "")
    assert read_banner_through("127.0.0.1", listen) == (BANNER, ECHO)
    row = status(store, ["sturdy"], paths=runtime_paths).tunnels[0]
    assert row.state is TunnelState.UP and row.restarts == 1 and row.healthy
    assert row.supervisor_pid == first.supervisor_pid


def test_supervisor_killed_leaves_no_ssh(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("owned", [{"type": "local", "listen": free_port(),
                             "to": f"127.0.0.1:{banner_server.port}"}])
    record = _start(store, runtime_paths, "owned")
    assert record.supervisor_pid is not None

    os.kill(record.supervisor_pid, signal.SIGKILL)

    eventually(lambda: process_gone(record.pid), "the client died with its supervisor")
    eventually(lambda: process_gone(record.supervisor_pid or 0), "the supervisor is gone")
    row = status(store, ["owned"], paths=runtime_paths).tunnels[0]
    assert row.state is TunnelState.FAILED and "engine" in row.detail
    assert status(store, ["owned"], paths=runtime_paths).tunnels[0] == row  # kept as it was
    assert_failure_kept(runtime_paths, "owned", ExitCode.CONNECTION)


def test_down_stops_supervisor_and_ssh(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("brief", [{"type": "local", "listen": free_port(),
                             "to": f"127.0.0.1:{banner_server.port}"}])
    record = _start(store, runtime_paths, "brief")

    outcome = down(["brief"], paths=runtime_paths).outcomes[0]

    assert outcome.action is Action.STOPPED
    assert process_gone(record.pid)
    assert state.read_record(runtime_paths, "brief") is None
    # Its supervisor is the resident one, which stays for other tunnels (test_resident.py).
    assert daemon.request(runtime_paths, {"op": "stop", "name": "brief"},
                          timeout=5) == {"stopped": False}


def _private_sshd(root: Path, identity: ClientIdentity) -> Sshd:
    return Sshd(root, identity).start()


@pytest.fixture
def own_sshd(tmp_path: Path, client_identity: ClientIdentity) -> Iterator[Sshd]:
    """An sshd of this test alone (it is stopped and started again)."""
    server = _private_sshd(tmp_path / "own_sshd", client_identity)
    try:
        yield server
    finally:
        server.stop()


def _end_server_sessions(port: int) -> None:
    """Kill the server side of every established session on ``port`` (sshd's children)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED \
                and conn.pid is not None:
            with contextlib.suppress(psutil.Error):
                psutil.Process(conn.pid).kill()


def test_sshd_restart_is_survived(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, own_sshd: Sshd,
) -> None:
    listen = free_port()
    write_profile("phoenix", [{"type": "local", "listen": listen,
                               "to": f"127.0.0.1:{banner_server.port}"}],
                  port=own_sshd.port, ssh_config_file=str(own_sshd.client.ssh_config))
    first = _start(store, runtime_paths, "phoenix")
    port = own_sshd.port

    own_sshd.stop()
    _end_server_sessions(port)  # as a server reboot would; a plain sshd restart keeps them

    def reconnecting() -> bool:
        row = status(store, ["phoenix"], paths=runtime_paths).tunnels[0]
        return row.state is TunnelState.RECONNECTING

    eventually(reconnecting, "status says reconnecting while the server is away")
    own_sshd.start()
    assert own_sshd.port == port  # the same port, as a restarted server keeps

    def restored() -> bool:
        now = state.read_record(runtime_paths, "phoenix")
        return now is not None and now.pid != first.pid and now.phase == "up"

    eventually(restored, "the tunnel came back after the server did")
    assert read_banner_through("127.0.0.1", listen) == (BANNER, ECHO)
    assert record_of(runtime_paths, "phoenix").restarts >= 1


def test_auth_failure_is_failed_with_one_attempt(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    own_sshd: Sshd, tmp_path: Path,
) -> None:
    other_key = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    config = tmp_path / "intruder_config"
    config.write_text(
        "Host *\n"
        f"    IdentityFile {other_key}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {own_sshd.client.known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    PasswordAuthentication no\n    KbdInteractiveAuthentication no\n")
    write_profile("intruder", [{"type": "local", "listen": free_port(), "to": "127.0.0.1:9"}],
                  port=own_sshd.port, ssh_config_file=str(config), restart="always")
    log_start = own_sshd.log_path.stat().st_size

    outcome = up(store, ["intruder"], paths=runtime_paths).outcomes[0]

    assert outcome.exit_code is ExitCode.AUTH, outcome.error
    assert_failure_kept(runtime_paths, "intruder", ExitCode.AUTH)
    time.sleep(2 * BACKOFF_START)  # a retry, if there were one, would have begun by now
    text = own_sshd.log_path.read_bytes()[log_start:].decode("utf-8", "replace")
    assert text.count("Connection from 127.0.0.1") == 1, text


# -- status truth table -------------------------------------------------------------------


def test_status_truth_table(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    """Each combination of supervisor and client alive or dead, built from real processes."""
    write_profile("truth", [{"type": "local", "listen": free_port(),
                             "to": f"127.0.0.1:{banner_server.port}"}])
    real = _start(store, runtime_paths, "truth")

    def row() -> object:
        return status(store, ["truth"], paths=runtime_paths).tunnels[0]

    both = status(store, ["truth"], paths=runtime_paths).tunnels[0]
    assert both.state is TunnelState.UP and both.healthy and both.supervisor_pid

    stand_in = subprocess.Popen(["sleep", "60"])
    try:
        proc = psutil.Process(stand_in.pid)
        eventually(lambda: proc.cmdline() == ["sleep", "60"], "sleep started")
        down(["truth"], paths=runtime_paths)
        dead = 999_999_999

        def write(**fields: object) -> None:
            from dataclasses import replace

            state.write_record(runtime_paths, replace(real, **fields))  # type: ignore[arg-type]

        # Supervisor alive, client dead: reconnecting, with the reason.
        write(supervisor_pid=stand_in.pid, supervisor_create_time=proc.create_time(),
              supervisor_argv=("sleep", "60"), pid=dead, phase="reconnecting",
              last_failure="the tunnel host closed the connection", restarts=3)
        shown = status(store, ["truth"], paths=runtime_paths)
        got = shown.tunnels[0]
        assert got.state is TunnelState.RECONNECTING and got.restarts == 3
        assert got.last_failure == "the tunnel host closed the connection"
        assert shown.exit_code is ExitCode.UNHEALTHY
        json_row = shown.to_json()[0]  # type: ignore[index]
        assert {"state", "restarts", "last_failure", "supervisor_pid"} <= set(json_row)

        # Supervisor dead, client alive: the client runs unsupervised, and status says so.
        write(supervisor_pid=dead, pid=stand_in.pid, create_time=proc.create_time(),
              argv=("sleep", "60"), phase="up")
        got = status(store, ["truth"], paths=runtime_paths).tunnels[0]
        assert got.state is TunnelState.UP and not got.healthy
        assert "supervisor" in got.detail and "nothing restarts" in got.detail

        # Both dead: failed (with the reason), and kept so until down.
        write(supervisor_pid=dead, pid=dead, phase="up")
        got = status(store, ["truth"], paths=runtime_paths).tunnels[0]
        assert got.state is TunnelState.FAILED and f"pid {dead}" in got.detail
        assert status(store, ["truth"], paths=runtime_paths).tunnels[0] == got
        assert down(["truth"], paths=runtime_paths).outcomes[0].action is Action.CLEANED
        assert status(store, ["truth"], paths=runtime_paths).tunnels[0].state \
            is TunnelState.DOWN
        assert stand_in.poll() is None, "status signalled a process"
    finally:
        stand_in.kill()
        stand_in.wait()
    del row
