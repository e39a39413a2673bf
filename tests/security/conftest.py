"""A password user and sshd of the safety tests' own (the auth tests' fixture holds theirs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.auth_helpers import PasswordServer, throwaway_password_server
from tests.auth.conftest import stop_all

__all__ = ["security_password_server", "stop_all"]


@pytest.fixture(scope="session")
def security_password_server(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordServer]:
    with throwaway_password_server(tmp_path_factory, "swsec", client_settings="") as server:
        yield server

@pytest.fixture(autouse=True)
def _private_state(state_dir: Path) -> Path:
    """Every test here runs in a state dir of its own: the engine a test starts is shut down
    after it, and a failure it keeps stays there."""
    return state_dir
