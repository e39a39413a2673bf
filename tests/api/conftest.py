"""Fixtures of the Python API tests: keywords reaching the sandbox sshd, and a check that a
test leaves no client process and no private directory behind."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sshwrap.sandbox import Sshd
from tests.auth.auth_helpers import PasswordServer, throwaway_password_server


@pytest.fixture(scope="session")
def api_password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordServer]:
    """A throwaway user with a password and an sshd that accepts it (as tests/auth has, under
    a user name of its own: both may run in one session)."""
    with throwaway_password_server(tmp_path_factory, "swapi") as server:
        yield server

@pytest.fixture
def keys(sshd: Sshd) -> dict[str, Any]:
    """The profile keys of a tunnel to the sandbox sshd."""
    return {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "ssh_config_file": str(sshd.client.ssh_config)}


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path, as unix sockets made in it need; removed at the end
    (after the engine of the test's state dir is gone)."""
    path = Path(tempfile.mkdtemp(prefix="swapi-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def leaves_nothing(short_tmp: Path, monkeypatch: pytest.MonkeyPatch,
                   state_dir: Path) -> Iterator[Path]:
    """Tunnels keep their files under a temporary directory of the test: it must be empty
    afterwards, and no child process of this one may still run."""
    private = short_tmp
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv("TMPDIR", str(private))  # the engine's control sockets go here too
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield private
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
            and "--engine" not in p.cmdline()]  # the engine: state_dir ends it
    assert not left, f"still running: {[p.cmdline() for p in left]}"
    left_files = list(private.glob("sshwrap-tunnel-*"))
    assert left_files == [], "a tunnel left files behind"
