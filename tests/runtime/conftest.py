"""Fixtures of the runtime tests: a state dir and profiles that reach the sandbox sshd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import Sshd
from sshwrap.store import ProfileStore
from tests.runtime.tunnel_helpers import ProfileWriter, stop_all_and_check_gone


@pytest.fixture
def runtime_paths(state_dir: Path) -> Iterator[StatePaths]:
    """A private state dir; every tunnel still recorded at the end is stopped and checked gone."""
    paths = StatePaths(state_dir)
    yield paths
    stop_all_and_check_gone(paths)
    assert state.recorded_names(paths) == []


@pytest.fixture
def store(profiles_dir: Path) -> ProfileStore:
    return ProfileStore((profiles_dir,))


@pytest.fixture
def write_profile(profiles_dir: Path, sshd: Sshd) -> ProfileWriter:
    """Write NAME.toml reaching the sandbox sshd; keyword arguments override profile keys."""

    def write(name: str, forwards: list[dict[str, Any]], **keys: Any) -> Path:
        data: dict[str, Any] = {
            "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "ssh_config_file": str(sshd.client.ssh_config),
        }
        data.update(keys)
        data = {k: v for k, v in data.items() if v is not None}
        data["forward"] = forwards
        path = profiles_dir / f"{name}.toml"
        path.write_text(tomli_w.dumps(data))
        return path

    return write
