"""Records and profiles read again only when their bytes change; what a power cut leaves."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sshwrap.errors import SshwrapError
from sshwrap.fsutil import TEMP_SUFFIX, atomic_write
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord
from sshwrap.store import ProfileStore

PROFILE = 'host = "{host}"\n[[forward]]\ntype = "dynamic"\nlisten = 1080\n'
FORWARD = ExpectedForward("local", "127.0.0.1:3307", "db:3306", host="127.0.0.1", port=3307)


def _record(name: str = "db", **changes: object) -> TunnelRecord:
    record = TunnelRecord(name=name, pid=4242, create_time=1.5, argv=("ssh", "-N", "--", "h"),
                          profile_hash="abc", client="ssh", started_at=10.0,
                          forwards=(FORWARD,), log_path="/x/db.log")
    return replace(record, **changes)  # type: ignore[arg-type]


def test_a_record_read_again_shows_every_change_made_by_any_writer(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "st")
    state.write_record(paths, _record())
    assert state.read_record(paths, "db") == _record()
    state.write_record(paths, _record(phase="up", verified=True))
    assert state.read_record(paths, "db") == _record(phase="up", verified=True)
    # Another process's write, of the same length, in place: read as it now is.
    text = paths.record("db").read_bytes().replace(b'"pid": 4242', b'"pid": 4343')
    paths.record("db").write_bytes(text)
    assert state.read_record(paths, "db") == _record(phase="up", verified=True, pid=4343)
    state.remove_record(paths, "db")
    assert state.read_record(paths, "db") is None


def test_an_empty_record_is_what_a_power_cut_leaves_and_reads_as_none(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "st").ensure()
    paths.record("cut").write_bytes(b"")
    assert state.read_record(paths, "cut") is None
    assert state.recorded_names(paths) == ["cut"]  # still listed: down removes it


def test_recorded_names_lists_records_only(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "st")
    assert state.recorded_names(paths) == []
    for name in ("b", "a.b", "a"):
        state.write_record(paths, _record(name))
    (paths.tunnels / f".a.json.1-2-{'0' * 12}{TEMP_SUFFIX}").write_text("left by a kill")
    (paths.tunnels / "notes.txt").write_text("")
    assert state.recorded_names(paths) == ["a", "a.b", "b"]


def test_only_a_kept_failure_is_written_durably(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    paths = StatePaths(tmp_path / "st")
    state.write_record(paths, _record(phase="up"))
    assert synced == []
    state.write_record(paths, _record().failed(SshwrapError("db: gone")))
    assert len(synced) == 2  # the file, then the folder's rename
    assert state.read_record(paths, "db").kept_failure  # type: ignore[union-attr]


def test_a_leftover_temp_of_a_dead_writer_goes_with_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "file"
    dead = tmp_path / f".file.999999999-0-{'a' * 12}{TEMP_SUFFIX}"
    other = tmp_path / f".other.999999999-0-{'a' * 12}{TEMP_SUFFIX}"
    dead.write_text("x")
    other.write_text("x")
    atomic_write(target, b"new", durable=False)
    assert target.read_bytes() == b"new"
    assert not dead.exists()
    assert other.exists()  # another file's leftover waits for that file's next write


def test_a_profile_is_found_in_the_first_folder_and_reloaded_when_edited(
        tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (second / "db.toml").write_text(PROFILE.format(host="second"))
    store = ProfileStore((first, second, tmp_path / "missing"))
    assert store.load("db").host == "second"
    (first / "db.toml").write_text(PROFILE.format(host="first"))
    assert store.load("db").host == "first"
    (first / "db.toml").write_text(PROFILE.format(host="edited"))
    assert store.load("db").host == "edited"
    assert store.find("db") == first / "db.toml" == store.paths()["db"]


def test_engine_answers_is_false_when_no_engine_can_start(tmp_path: Path) -> None:
    from sshwrap.runtime.engine.daemon import engine_answers

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert not engine_answers({"SSHWRAP_STATE_DIR": str(blocked / "state")})


def test_engine_answers_starts_the_engine_once_and_finds_it_after(tmp_path: Path) -> None:
    from sshwrap.runtime.engine import daemon

    env = {**os.environ, "SSHWRAP_STATE_DIR": str(tmp_path / "st")}
    paths = StatePaths(tmp_path / "st")
    try:
        assert daemon.engine_answers(env)
        first = daemon.request(paths, {"op": "ping"}, timeout=10)["pid"]
        assert daemon.engine_answers(env)
        assert daemon.request(paths, {"op": "ping"}, timeout=10)["pid"] == first
    finally:
        daemon.shutdown(paths)
    assert state.file_lock_is_free(daemon.lock_path(paths))


def test_this_process_is_identified_by_its_create_time_and_command_line() -> None:
    from sshwrap.runtime.system.identity import identified, own_identity

    pid, create_time, argv = own_identity()
    assert pid == os.getpid()
    found = identified(pid, create_time, argv)
    assert found is not None and found.pid == pid
    assert identified(pid, create_time + 1.0, argv) is None  # an earlier holder of the pid
    assert identified(pid, create_time, (*argv, "--engine")) is None


def test_the_threads_of_one_up_start_one_engine_between_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from sshwrap.runtime.engine import daemon
    from sshwrap.runtime.system.detach import HeldEngine

    started: list[int] = []

    class Counted(HeldEngine):
        def release(self) -> Any:
            process = super().release()
            started.append(process.pid)
            return process

    monkeypatch.setattr(daemon, "HeldEngine", Counted)
    env = {**os.environ, "SSHWRAP_STATE_DIR": str(tmp_path / "st")}
    paths = StatePaths(tmp_path / "st").ensure()
    threads = [threading.Thread(target=daemon.ensure_running, args=(paths, env))
               for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(started) == 1
        assert daemon.request(paths, {"op": "ping"}, timeout=10)["pid"] == started[0]
    finally:
        daemon.shutdown(paths)
