"""sshwrap reload and SIGHUP against a real sshd: only a tunnel whose client changed is
restarted; a deleted profile's tunnel stops; an invalid profile is not applied, and the note
saying so is never lost to the tunnel's own writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest

from sshwrap.core.model import Profile
from sshwrap.errors import ExitCode
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.engine.reload import note_not_applied, reload
from sshwrap.runtime.supervise.supervisor import Supervisor
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import TunnelRecord
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import TunnelState, status, up
from tests.events.conftest import Follower
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    eventually,
    process_gone,
    read_banner_through,
    record_of,
)


def _forward(port: int, banner_server: BannerServer) -> list[dict[str, object]]:
    return [{"type": "local", "listen": f"127.0.0.1:{port}",
             "to": f"127.0.0.1:{banner_server.port}"}]


def _run_reload(paths: StatePaths) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "sshwrap", "reload", "--json"],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "SSHWRAP_STATE_DIR": str(paths.root)})
    return done.returncode, json.loads(done.stdout)


def test_reload_restarts_only_the_edited_stops_the_deleted_and_refuses_the_invalid(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, follower: type[Follower],
) -> None:
    ports = {name: free_port() for name in ("alpha", "beta", "gamma")}
    for name, port in ports.items():
        write_profile(name, _forward(port, banner_server))
    up(store, list(ports), paths=runtime_paths)
    pids = {name: record_of(runtime_paths, name).pid for name in ports}
    events = follower(runtime_paths)

    # A forward edited: alpha alone is restarted, on its new port.
    moved = free_port()
    write_profile("alpha", _forward(moved, banner_server))
    code, answer = _run_reload(runtime_paths)

    assert code == 0, answer
    actions = {t["name"]: t["action"] for t in answer["tunnels"]}
    assert actions == {"alpha": "restarted", "beta": "unchanged", "gamma": "unchanged"}
    assert process_gone(pids["alpha"]) and record_of(runtime_paths, "alpha").pid != pids["alpha"]
    assert read_banner_through("127.0.0.1", moved) == (BANNER, ECHO)
    assert {n: record_of(runtime_paths, n).pid for n in ("beta", "gamma")} == \
        {n: pids[n] for n in ("beta", "gamma")}
    restarted = events.until("alpha", "up")
    assert [(e["from_state"], e["to_state"]) for e in restarted] == [
        ("up", "down"), ("down", "starting"), ("starting", "up")]

    # A profile deleted: its tunnel stops, the others run on.
    (store.dirs[0] / "beta.toml").unlink()
    report = reload(runtime_paths)

    assert [(o.name, o.action) for o in report.outcomes] == [
        ("alpha", "unchanged"), ("beta", "stopped"), ("gamma", "unchanged")]
    assert report.exit_code is ExitCode.OK
    assert process_gone(pids["beta"]) and state.read_record(runtime_paths, "beta") is None
    assert record_of(runtime_paths, "gamma").pid == pids["gamma"]
    events.until("beta", "down")

    # A profile made invalid: not applied; the error in the exit code, status and events.
    write_profile("gamma", _forward(ports["gamma"], banner_server), keepalive=-1)
    code, answer = _run_reload(runtime_paths)

    assert code == int(ExitCode.BAD_INPUT), answer
    gamma = next(t for t in answer["tunnels"] if t["name"] == "gamma")
    assert gamma["action"] == "invalid" and "keepalive" in json.dumps(gamma["error"])
    assert record_of(runtime_paths, "gamma").pid == pids["gamma"]
    assert read_banner_through("127.0.0.1", ports["gamma"]) == (BANNER, ECHO)
    row = next(r for r in status(store, ["gamma"], paths=runtime_paths).tunnels)
    assert row.state is TunnelState.UP and row.changed
    assert "not applied" in row.detail and "keepalive" in row.detail
    told = events.until("gamma", "up")[-1]
    assert told["from_state"] == "up" and "keepalive" in str(told["reason"])

    # Made valid again, as it was: nothing to restart, and the error is gone.
    write_profile("gamma", _forward(ports["gamma"], banner_server))
    assert [(o.name, o.action) for o in reload(runtime_paths).outcomes] == [
        ("alpha", "unchanged"), ("gamma", "unchanged")]
    assert record_of(runtime_paths, "gamma").reload_error is None


def test_sighup_reloads_like_the_command(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    ports = {"alpha": free_port(), "beta": free_port()}
    for name, port in ports.items():
        write_profile(name, _forward(port, banner_server))
    up(store, list(ports), paths=runtime_paths)
    alpha, beta = record_of(runtime_paths, "alpha"), record_of(runtime_paths, "beta")
    moved = free_port()
    write_profile("alpha", _forward(moved, banner_server))

    os.kill(int(daemon.request(runtime_paths, {"op": "ping"}, timeout=5)["pid"]), signal.SIGHUP)

    eventually(lambda: (r := state.read_record(runtime_paths, "alpha")) is not None
               and r.pid != alpha.pid and r.phase == "up", "alpha restarted on SIGHUP")
    assert read_banner_through("127.0.0.1", moved) == (BANNER, ECHO)
    assert record_of(runtime_paths, "beta").pid == beta.pid


def test_reload_without_an_engine_does_nothing(runtime_paths: StatePaths) -> None:
    report = reload(runtime_paths)
    assert not report.engine_running and report.outcomes == ()
    assert report.exit_code is ExitCode.OK


def test_a_reload_note_is_not_lost_to_a_record_written_by_the_tunnel_at_the_same_time(
    store: ProfileStore, runtime_paths: StatePaths, monkeypatch: pytest.MonkeyPatch,
) -> None:
    supervisor = Supervisor(Profile(name="racy", host="h"), runtime_paths, store,
                            first_wait=1.0, foreground=False)
    supervisor.record = TunnelRecord(
        name="racy", pid=0, create_time=0.0, argv=(), profile_hash="", client="ssh",
        started_at=0.0, forwards=(), log_path=str(runtime_paths.log("racy")), phase="up")
    owner_writing, noted = threading.Event(), threading.Event()
    write = state.write_record

    def slow_for_the_owner(paths: StatePaths, record: TunnelRecord) -> None:
        # The tunnel's own write is held until the note is in (or a second has passed: the
        # note waits for it, as it must).
        if threading.current_thread().name == "owner":
            owner_writing.set()
            noted.wait(1.0)
        write(paths, record)

    monkeypatch.setattr(state, "write_record", slow_for_the_owner)
    owner = threading.Thread(target=supervisor._update, kwargs={"phase": "reconnecting"},
                             name="owner")
    owner.start()
    assert owner_writing.wait(10)

    def note() -> None:
        note_not_applied(supervisor, "the edited profile was not applied: bad")
        noted.set()

    reloader = threading.Thread(target=note, name="reload")
    reloader.start()
    owner.join(10)
    reloader.join(10)

    written = record_of(runtime_paths, "racy")
    assert written.phase == "reconnecting"
    assert written.reload_error == "the edited profile was not applied: bad"
