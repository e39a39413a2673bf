"""Caches and registries belong to their owners: a watch, a store, the engine's hosting."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from sshwrap.runtime.supervise import shared
from sshwrap.runtime.supervise.hosting import Hosting


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
