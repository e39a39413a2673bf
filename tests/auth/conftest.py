"""Fixtures of the authentication tests: a throwaway user with a password, and an sshd that
accepts passwords (root only: the user is created with useradd and removed afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.auth_helpers import PasswordServer, run_cli, throwaway_password_server


@pytest.fixture(scope="session")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordServer]:
    with throwaway_password_server(tmp_path_factory, "swpw") as server:
        yield server

@pytest.fixture
def stop_all(state_dir: Path, profiles_dir: Path) -> Iterator[None]:
    """Stops every tunnel the test started."""
    yield
    done = run_cli("down", "--all", "--profiles", str(profiles_dir))
    assert done.returncode == 0, done.stderr


@pytest.fixture(autouse=True)
def _private_state(state_dir: Path) -> Path:
    """Every test here runs in a state dir of its own: the engine a test starts is shut down
    after it, and a failure it keeps stays there."""
    return state_dir
