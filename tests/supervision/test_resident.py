"""The resident supervisor against a real sshd: one process for every tunnel of a state dir."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

from sshwrap.errors import ExitCode
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
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


def _two_tunnels(write_profile: ProfileWriter, banner_server: BannerServer) -> dict[str, int]:
    ports = {"alpha": free_port(), "beta": free_port()}
    for name, port in ports.items():
        write_profile(name, [{"type": "local", "listen": f"127.0.0.1:{port}",
                              "to": f"127.0.0.1:{banner_server.port}"}])
    return ports


def _resident_pid(paths: StatePaths) -> int:
    return int(daemon.request(paths, {"op": "ping"}, timeout=5)["pid"])


def test_every_tunnel_runs_under_one_resident_supervisor(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    ports = _two_tunnels(write_profile, banner_server)

    report = up(store, ["alpha", "beta"], paths=runtime_paths)

    assert [o.action for o in report.outcomes] == [Action.STARTED, Action.STARTED]
    resident = _resident_pid(runtime_paths)
    for name, port in ports.items():
        record = record_of(runtime_paths, name)
        assert record.supervisor_pid == resident
        assert daemon.is_resident(record.supervisor_argv)
        assert psutil.Process(record.pid).ppid() == resident  # its own child
        assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)


def test_down_of_one_leaves_the_others_and_down_all_ends_the_resident(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    ports = _two_tunnels(write_profile, banner_server)
    up(store, ["alpha", "beta"], paths=runtime_paths)
    alpha, beta = record_of(runtime_paths, "alpha"), record_of(runtime_paths, "beta")
    resident = psutil.Process(_resident_pid(runtime_paths))

    assert down(["alpha"], paths=runtime_paths).outcomes[0].action is Action.STOPPED

    assert process_gone(alpha.pid) and state.read_record(runtime_paths, "alpha") is None
    assert resident.is_running() and state.live_process(beta) is not None
    assert read_banner_through("127.0.0.1", ports["beta"]) == (BANNER, ECHO)

    outcomes = down(all_tunnels=True, paths=runtime_paths).outcomes

    assert [(o.name, o.action) for o in outcomes] == [("beta", Action.STOPPED)]
    assert process_gone(beta.pid)
    resident.wait(10)  # ends with its last tunnel on down --all
    # A control folder outside the state dir goes with the engine (shared.py): no socket.
    with contextlib.suppress(FileNotFoundError):
        assert not daemon.socket_path(runtime_paths).exists()


def test_a_new_up_after_down_all_starts_a_new_resident(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    ports = _two_tunnels(write_profile, banner_server)
    up(store, ["alpha"], paths=runtime_paths)
    first = _resident_pid(runtime_paths)
    down(all_tunnels=True, paths=runtime_paths)

    assert up(store, ["alpha"], paths=runtime_paths).outcomes[0].action is Action.STARTED

    assert _resident_pid(runtime_paths) != first
    assert read_banner_through("127.0.0.1", ports["alpha"]) == (BANNER, ECHO)


def test_killing_the_resident_takes_every_client_with_it(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    _two_tunnels(write_profile, banner_server)
    up(store, ["alpha", "beta"], paths=runtime_paths)
    clients = [record_of(runtime_paths, n).pid for n in ("alpha", "beta")]

    resident = _resident_pid(runtime_paths)
    os.kill(resident, signal.SIGKILL)

    # The clients die as the supervisor's threads do, a moment before the process is gone.
    eventually(lambda: all(process_gone(pid) for pid in [*clients, resident]),
               "both clients died with their supervisor (parent-death signal)")
    rows = status(store, ["alpha", "beta"], paths=runtime_paths).tunnels
    assert [r.state for r in rows] == [TunnelState.FAILED, TunnelState.FAILED], rows
    # The failure is kept, with its reason, for the next status and in the records.
    again = status(store, ["alpha", "beta"], paths=runtime_paths).tunnels
    assert [r.state for r in again] == [TunnelState.FAILED, TunnelState.FAILED], again
    assert all(f"engine (pid {resident}) ended" in (r.last_failure or "") for r in again)
    for name in ("alpha", "beta"):
        assert_failure_kept(runtime_paths, name, ExitCode.CONNECTION)


def test_a_failed_tunnel_lets_go_while_the_resident_runs_others(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    ports = _two_tunnels(write_profile, banner_server)
    up(store, ["alpha"], paths=runtime_paths)
    with BannerServer() as squatter:  # beta's port is taken: its first start fails
        write_profile("beta", [{"type": "local", "listen": f"127.0.0.1:{squatter.port}",
                                "to": f"127.0.0.1:{banner_server.port}"}])
        outcome = up(store, ["beta"], paths=runtime_paths).outcomes[0]

        assert outcome.action is Action.FAILED and outcome.error is not None
        assert f"{squatter.port}" in outcome.error.message
        assert_failure_kept(runtime_paths, "beta", ExitCode.FORWARDING)
    # The same name starts at once when its port is free again, under the same resident.
    write_profile("beta", [{"type": "local", "listen": f"127.0.0.1:{ports['beta']}",
                            "to": f"127.0.0.1:{banner_server.port}"}])
    assert up(store, ["beta"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    assert record_of(runtime_paths, "beta").supervisor_pid == \
        record_of(runtime_paths, "alpha").supervisor_pid
