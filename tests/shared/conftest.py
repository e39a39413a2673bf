"""Fixtures of the shared-connection tests: the runtime fixtures, and no master left behind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psutil
import pytest

from sshwrap.runtime.supervise import shared
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from tests.runtime.conftest import runtime_paths, store, write_profile

__all__ = ["runtime_paths", "shared_paths", "store", "write_profile"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def shared_paths(runtime_paths: StatePaths) -> Iterator[StatePaths]:
    """The runtime state dir; at the end every master and its supervisor must be gone."""
    yield runtime_paths
    from sshwrap.usecases.up import down

    down(all_tunnels=True, paths=runtime_paths)
    masters = shared.master_paths(runtime_paths)
    leftovers = [state.read_record(masters, n) for n in state.recorded_names(masters)]
    for record in leftovers:  # stop them before failing, so nothing outlives the test
        if record is not None and record.shared is not None:
            shared.stop_master(runtime_paths, record.shared)
    assert leftovers == [], "a shared master outlived its last tunnel"
    # pytest's tmp paths are too long for control sockets: they live in a short directory
    # outside the state dir, which the engine removed as it exited (down --all).
    with contextlib.suppress(FileNotFoundError):
        folder = shared.control_dir(runtime_paths, create=False)
        assert folder.is_relative_to(runtime_paths.root), f"{folder} outlived the engine"
