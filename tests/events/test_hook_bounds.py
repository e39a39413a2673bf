"""Hooks are bounded: in output (the engine's memory), number, lifetime (a detached child
ends with them) and secrets (no profile's password variable); ``down --all`` never waits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sshwrap.core.parse import parse_profile
from sshwrap.runtime.supervise import hooks
from sshwrap.runtime.supervise.events import Event
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, up
from tests.runtime.tunnel_helpers import ProfileWriter, eventually, process_gone, record_of

BASE = {"host": "db.example.com",
        "forward": [{"type": "local", "listen": 5432, "to": "localhost:5432"}]}


def _event(to_state: str) -> Event:
    return Event(time=0.0, name="p", from_state="up", to_state=to_state, reason="why",
                 pid=1, restarts=0)


def _forward(banner_server: BannerServer) -> list[dict[str, object]]:
    return [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
             "to": f"127.0.0.1:{banner_server.port}"}]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_hook_flooding_without_newlines_leaves_the_engine_small(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    # 64 MB on one line, no newline: the engine reads it in chunks and logs its first 4 KiB.
    flood = "head -c 64000000 /dev/zero | tr '\\0' x"
    write_profile("flood", _forward(banner_server), restart="no",
                  hooks={"on_failed": ["/bin/sh", "-c", flood], "timeout": 120})
    assert up(store, ["flood"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    record = record_of(runtime_paths, "flood")
    engine = record.supervisor_pid
    before = _rss_kib(engine)
    log = runtime_paths.log("flood")
    peak, done = before, threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_kib(engine))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    os.kill(record.pid, 9)  # the client dies: failed for good, and the flood runs
    eventually(lambda: "on_failed: exited with status 0" in log.read_text(),
               "the flood ended", timeout=120)
    done.set()
    watcher.join()

    assert peak - before < 32 * 1024, f"engine grew from {before} KiB to {peak} KiB"
    text = log.read_text()
    assert "[cut]" in text and log.stat().st_size < hooks.MAX_OUTPUT + 64 * 1024


def test_hung_hooks_of_one_tunnel_are_bounded_the_rest_skipped(tmp_path: Path) -> None:
    started, log = tmp_path / "started", tmp_path / "p.log"
    profile = parse_profile("p", {**BASE, "hooks": {"timeout": 3600, "on_reconnecting": [
        "/bin/sh", "-c", f"echo $$ >> {started}; exec sleep 600"]}}, "p.toml")
    runner = hooks.Hooks()
    try:
        threads = [runner.run_for(profile, _event("reconnecting"), {"PATH": os.defpath}, log)
                   for _ in range(8)]
        assert sum(t is not None for t in threads) == 3  # MAX_AT_ONCE, the documented bound
        eventually(lambda: started.exists()
                   and len(started.read_text().split()) == 3, "3 hooks run")
        assert log.read_text().count("skipped: 3 hooks of this tunnel still run") == 5
        pids = [int(p) for p in started.read_text().split()]
        assert not any(process_gone(p) for p in pids)
    finally:
        runner.drain(0)
    for pid in pids:
        eventually(lambda pid=pid: process_gone(pid), f"hook {pid} ended")


def _detaching(pidfile: Path) -> list[str]:
    """A hook that leaves a child in a session of its own and exits once it runs."""
    return ["/bin/sh", "-c",
            f"setsid /bin/sh -c 'echo $$ > {pidfile}; exec sleep 600' >/dev/null 2>&1 & "
            f"while [ ! -s {pidfile} ]; do sleep 0.01; done"]


@pytest.mark.parametrize("how", ["down", "engine stops"])
def test_a_detached_child_of_a_hook_ends_with_it(
    how: str, store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    pidfile = runtime_paths.root.parent / "detached.pid"
    write_profile("det", _forward(banner_server), hooks={"on_up": _detaching(pidfile)})
    assert up(store, ["det"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), "it detached")
    detached = int(pidfile.read_text())
    command = [sys.executable, "-m", "sshwrap", "down", *(["det"] if how == "down"
                                                           else ["--all"])]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    eventually(lambda: process_gone(detached), "the detached child ended")


def test_down_all_does_not_wait_on_a_hook_holding_its_pipe(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    pidfile = tmp_path / "down.pid"
    write_profile("slow", _forward(banner_server), hooks={
        "on_down": ["/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 600"], "timeout": 600})
    assert up(store, ["slow"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    engine = record_of(runtime_paths, "slow").supervisor_pid

    out = subprocess.run([sys.executable, "-m", "sshwrap", "down", "--all"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), "on_down ran")
    hook = int(pidfile.read_text())
    # down returned while the hook still ran, its output pipe open (exec sleep keeps it)...
    assert not process_gone(hook)
    assert any(os.readlink(f"/proc/{hook}/fd/{fd}").startswith("pipe:")
               for fd in ("1", "2"))
    # ...and the engine, gone after its drain, took the hook with it.
    eventually(lambda: process_gone(engine), "the engine exited", timeout=30)
    eventually(lambda: process_gone(hook), "the hook ended with the engine")


def test_a_hook_never_sees_another_profiles_password_variable(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pw2 is never started: its file alone makes PW2_SECRET a secret to every hook.
    (store.dirs[0] / "pw2.toml").write_text(
        'host = "db.example.com"\nauth = "password"\npassword_env = "PW2_SECRET"\n'
        '[[forward]]\ntype = "local"\nlisten = 5432\nto = "localhost:5432"\n')
    monkeypatch.setenv("PW2_SECRET", "hunter2-in-the-env")
    monkeypatch.setenv("KEEP_ME", "display-and-bus")
    write_profile("k1", _forward(banner_server), hooks={"on_up": ["env"]})

    assert up(store, ["k1"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    log = runtime_paths.log("k1")
    eventually(lambda: "on_up: exited with status 0" in log.read_text(), "the hook ran")
    text = log.read_text()
    assert "KEEP_ME=display-and-bus" in text and "SSHWRAP_TUNNEL=k1" in text
    assert "hunter2" not in text and "PW2_SECRET" not in text
