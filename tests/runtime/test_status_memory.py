"""status's memory: owned by the engine for its lifetime (profiles compiled once while their
files stay the same, each client's first hop found once), a fresh one per command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sshwrap.errors import ExitCode
from sshwrap.runtime.engine.resident import ResidentSupervisor
from sshwrap.runtime.observe import livenums
from sshwrap.runtime.observe.statusmemory import StatusMemory
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.status import status
from sshwrap.usecases.up import up
from tests.runtime.tunnel_helpers import ProfileWriter

PROFILE = ('host = "db.example.com"\n[[forward]]\ntype = "local"\nlisten = {port}\n'
           'to = "localhost:5432"\n')


def _counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    import sshwrap.store

    loaded: list[Path] = []
    load = sshwrap.store.load_profile_file

    def counted(path: Path, *args: Any, **kwargs: Any) -> Any:
        loaded.append(path)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(sshwrap.store, "load_profile_file", counted)
    return loaded


def test_a_memory_compiles_a_profile_once_while_its_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "db.toml").write_text(PROFILE.format(port=5432))
    store, paths = ProfileStore((profiles,)), StatePaths(tmp_path / "state")
    loaded = _counting_loads(monkeypatch)
    memory = StatusMemory()

    for _ in range(3):
        row = status(store, paths=paths, memory=memory).tunnels[0]
        assert row.forwards[0].listen.endswith("5432")
    assert len(loaded) == 1
    (profiles / "db.toml").write_text(PROFILE.format(port=15432))  # edited: compiled again
    assert status(store, paths=paths, memory=memory).tunnels[0].forwards[0].listen \
        .endswith("15432")
    assert len(loaded) == 2
    # Without an engine's memory (the command line), each status compiles afresh.
    status(store, paths=paths)
    status(store, paths=paths)
    assert len(loaded) == 4


def test_each_engine_owns_its_status_memory(tmp_path: Path) -> None:
    first = ResidentSupervisor(StatePaths(tmp_path / "a"))
    second = ResidentSupervisor(StatePaths(tmp_path / "b"))
    assert isinstance(first.status_memory, StatusMemory)
    assert first.status_memory is not second.status_memory


@pytest.mark.sshd
def test_a_memory_finds_each_clients_first_hop_once(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_profile("web", [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                           "to": f"127.0.0.1:{banner_server.port}"}])
    assert up(store, ["web"], paths=runtime_paths).exit_code is ExitCode.OK
    memory = StatusMemory()
    row = status(store, ["web"], paths=runtime_paths, memory=memory).tunnels[0]
    assert row.pid is not None and row.rtt_ms is not None
    hop = memory.hops.get(row.pid)
    assert hop is not None

    def unreadable(_pid: int) -> None:
        return None  # as if the client's descriptors could not be read any more

    monkeypatch.setattr(livenums, "socket_fds", unreadable)
    # Remembered: its round-trip time is still found, from the same socket.
    again = status(store, ["web"], paths=runtime_paths, memory=memory).tunnels[0]
    assert again.rtt_ms is not None and memory.hops.get(row.pid) == hop
    # A fresh memory (the command line's) has to read the descriptors.
    assert status(store, ["web"], paths=runtime_paths).tunnels[0].rtt_ms is None
