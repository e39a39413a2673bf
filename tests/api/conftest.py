"""Fixtures of the Python API tests: keywords reaching the sandbox sshd, and a check that a
test leaves no client process and no private directory behind."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sshwrap.sandbox import Sshd
from tests.auth.conftest import password_server  # noqa: F401 - a fixture used here too


@pytest.fixture
def keys(sshd: Sshd) -> dict[str, Any]:
    """The profile keys of a tunnel to the sandbox sshd."""
    return {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "ssh_config_file": str(sshd.client.ssh_config)}


@pytest.fixture(autouse=True)
def leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   state_dir: Path) -> Iterator[Path]:
    """Tunnels keep their files under a temporary directory of the test: it must be empty
    afterwards, and no child process of this one may still run."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield private
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running: {[p.cmdline() for p in left]}"
    assert list(private.iterdir()) == [], "a tunnel left files behind"
