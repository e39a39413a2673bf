"""sshwrap events against a real sshd: every state change, in order, as JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, down, up
from tests.events.conftest import Follower
from tests.runtime.tunnel_helpers import ProfileWriter, eventually, record_of


def _chain(events: list[dict[str, object]], name: str) -> list[str]:
    """The states ``name`` went through; each event starts where the one before ended."""
    mine = [e for e in events if e["name"] == name]
    for before, after in zip([{"to_state": "down"}, *mine], mine, strict=False):
        assert after["from_state"] == before["to_state"], mine
    return [str(e["to_state"]) for e in mine]


def test_up_failure_reconnect_and_down_are_followed_in_order(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, follower: type[Follower],
) -> None:
    for name in ("alpha", "beta"):
        write_profile(name, [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                              "to": f"127.0.0.1:{banner_server.port}"}],
                      restart="on-failure" if name == "alpha" else "no")
    events = follower(runtime_paths)

    report = up(store, ["alpha", "beta"], paths=runtime_paths)
    assert [o.action for o in report.outcomes] == [Action.STARTED, Action.STARTED]
    first = record_of(runtime_paths, "alpha")
    os.kill(first.pid, signal.SIGKILL)  # alpha reconnects
    eventually(lambda: record_of(runtime_paths, "alpha").pid != first.pid
               and record_of(runtime_paths, "alpha").phase == "up", "alpha up again")
    os.kill(record_of(runtime_paths, "beta").pid, signal.SIGKILL)  # beta fails for good
    seen = events.until("beta", "failed")
    down(["alpha"], paths=runtime_paths)
    seen += events.until("alpha", "down")

    assert _chain(seen, "alpha") == ["starting", "up", "reconnecting", "up", "down"]
    assert _chain(seen, "beta") == ["starting", "up", "failed"]
    alpha = [e for e in seen if e["name"] == "alpha"]
    up_pids = [e["pid"] for e in alpha if e["to_state"] == "up"]
    assert up_pids[0] == first.pid and up_pids[1] not in (None, first.pid)
    assert "SIGKILL" in str(alpha[2]["reason"]) and alpha[2]["restarts"] == 0
    assert alpha[3]["restarts"] == 1 and alpha[4]["pid"] is None
    assert alpha[4]["reason"] == "stopped on request"
    assert all(isinstance(e["time"], float) for e in seen)
    times = [e["time"] for e in alpha]
    assert times == sorted(times)
    assert events.interrupt() == 0  # Ctrl-C ends it as it ends 'logs -f'


def test_names_select_the_tunnels_followed(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, follower: type[Follower],
) -> None:
    for name in ("alpha", "beta"):
        write_profile(name, [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                              "to": f"127.0.0.1:{banner_server.port}"}])
    events = follower(runtime_paths, "beta")

    up(store, ["alpha", "beta"], paths=runtime_paths)
    down(["alpha", "beta"], paths=runtime_paths)

    seen = events.until("beta", "down")
    assert {e["name"] for e in seen} == {"beta"}
    assert _chain(seen, "beta") == ["starting", "up", "down"]


def test_an_event_line_shows_every_field_and_obeys_no_escape_sequence() -> None:
    from sshwrap.cli.render.events import event_line
    from sshwrap.runtime.supervise.events import Event

    event = Event(time=0.0, name="db", from_state="up", to_state="reconnecting",
                  reason="server said \x1b[2Jhi", pid=42, restarts=3)

    line = event_line(event)
    assert " db up -> reconnecting (pid 42, restarts 3): server said " in line
    assert "\x1b" not in line and line.endswith("hi\n")
    assert Event.from_json(json.loads(event_line(event, as_json=True))) == event


def test_events_of_a_name_without_profile_or_tunnel_fails_at_once(
    runtime_paths: StatePaths, profiles_dir: Path) -> None:
    """A mistyped name would be followed for ever: it fails as 'status NAME' does, exit 2,
    and no engine is started for it."""
    (profiles_dir / "db.toml").write_text('host = "example.com"\n')
    try:
        done = subprocess.run([sys.executable, "-m", "sshwrap", "events", "db", "dbb"],
                              check=False, capture_output=True, text=True, timeout=20,
                              env={**os.environ, "SSHWRAP_STATE_DIR": str(runtime_paths.root)})
    except subprocess.TimeoutExpired:
        raise AssertionError("'events dbb' waited instead of failing") from None
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "no profile or running tunnel named 'dbb'" in done.stderr
    assert "'db'" not in done.stderr
    assert not daemon.has_run(runtime_paths)
