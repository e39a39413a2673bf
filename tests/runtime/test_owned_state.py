"""Caches and registries belong to their owners: a watch, a store, the engine's hosting."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from types import TracebackType

from sshwrap.runtime.engine import daemon
from sshwrap.runtime.observe.readywatch import POLL_BUDGET, ReadyWatch
from sshwrap.runtime.supervise import shared
from sshwrap.runtime.supervise.hosting import Hosting
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.store import ProfileStore, ProfileStores

PROFILE = 'host = "example.org"\n[[forward]]\ntype = "local"\nlisten = 5432\nto = "db:5432"\n'


def test_a_watch_shares_one_read_of_the_listeners_among_its_users() -> None:
    ready = ReadyWatch()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        first = ready.recent_tcp_listeners(3600.0)
        assert first is not None and sock.getsockname()[1] in {ln.port for ln in first}
        assert ready.recent_tcp_listeners(3600.0) is first  # read once for every user
        assert ReadyWatch().recent_tcp_listeners(3600.0) is not first  # another's own read
        assert ready.recent_tcp_listeners(0.0) is not first  # too old: read again


def test_a_watch_paces_the_polls_of_the_tunnels_it_verifies() -> None:
    ready, other = ReadyWatch(), ReadyWatch()
    many = int(0.005 / POLL_BUDGET) * 4
    waiting = [ready.waiting() for _ in range(many)]
    for block in waiting:
        block.__enter__()
    assert ready.interval(0.005) == many * POLL_BUDGET > 0.005
    assert other.interval(0.005) == 0.005  # another watch's tunnels are not its own
    for block in waiting:
        block.__exit__(None, None, None)
    assert ready.interval(0.005) == 0.005


def test_a_store_parses_a_file_again_only_when_its_bytes_change(tmp_path: Path) -> None:
    (tmp_path / "db.toml").write_text(PROFILE)
    store = ProfileStore((tmp_path,))
    first = store.load("db")
    assert store.load("db") is first and store.load_all()[0] == [first]
    assert ProfileStore((tmp_path,)).load("db") is not first  # another store parses its own
    (tmp_path / "db.toml").write_text(PROFILE.replace("example.org", "example.net"))
    assert store.load("db").host == "example.net"


def test_a_keeper_of_stores_keeps_one_per_tuple_of_folders(tmp_path: Path) -> None:
    stores = ProfileStores()
    store = stores.get([tmp_path, tmp_path / "b"])
    assert stores.get((tmp_path, tmp_path / "b")) is store
    assert stores.get([tmp_path]) is not store
    assert ProfileStores().get([tmp_path, tmp_path / "b"]) is not store
    for number in range(ProfileStores.MOST):  # the oldest go first: it stays bounded
        stores.get([tmp_path / str(number)])
    assert stores.get([tmp_path, tmp_path / "b"]) is not store


def test_the_engines_own_start_is_called_with_no_engine_asked(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "state")
    asked: list[dict[str, object]] = []

    def start(message: dict[str, object]) -> dict[str, object]:
        asked.append(message)
        return {"code": 0}

    message = {"op": "start", "name": "db", "env": dict(os.environ)}
    assert daemon.start_request(paths, message, timeout=1.0, local=start) == {"code": 0}
    assert asked == [message]
    assert not daemon.has_run(paths)  # no engine was started, nor its lock made


class _Slots:
    """Counts who holds it, as the engine's semaphore would be held."""

    def __init__(self) -> None:
        self.entered = 0

    def __enter__(self) -> None:
        self.entered += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        pass


def test_the_engines_ssh_mux_clients_take_its_own_slots(tmp_path: Path) -> None:
    hosting = Hosting(tmp_path, lambda *_a, **_k: 0)
    assert isinstance(hosting.mux_slots, type(threading.BoundedSemaphore()))
    assert Hosting(tmp_path, lambda *_a, **_k: 0).mux_slots is not hosting.mux_slots
    slots = hosting.mux_slots = _Slots()  # type: ignore[assignment]
    result = shared.mux(tmp_path / "no-master", "check", hosting=hosting)
    assert result.returncode != 0 and slots.entered == 1  # no master there, asked in a slot
    shared.mux(tmp_path / "no-master", "check")  # outside the engine: no slot taken
    assert slots.entered == 1
