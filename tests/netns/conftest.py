"""The guides' network as namespaces (root only), and a way to run sshwrap on any of its hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sshwrap.netlab import NetLab, can_run

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    reason = can_run()
    if reason:
        pytest.skip(f"network-namespace scenarios skipped: {reason}")
    network = NetLab(tmp_path_factory.mktemp("lab"))
    network.up()
    try:
        yield network
    finally:
        network.down()


@dataclass
class Client:
    """sshwrap as a user on the host ``you`` runs it, with its own profiles and state."""

    lab: NetLab
    profiles: Path
    state: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(SSHWRAP_PROFILES=str(self.profiles), SSHWRAP_STATE_DIR=str(self.state))
        return env

    def write_profile(self, name: str, text: str) -> None:
        (self.profiles / f"{name}.toml").write_text(text)

    def sshwrap(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.lab.run("you", [sys.executable, "-m", "sshwrap", *args], env=self.env(),
                            timeout=timeout)

    def status(self, name: str) -> dict[str, Any]:
        result = self.sshwrap("status", name, "--json")
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return next(row for row in rows if row["name"] == name)


@pytest.fixture
def you(lab: NetLab, tmp_path: Path) -> Iterator[Client]:
    client = Client(lab, tmp_path / "profiles", tmp_path / "state")
    client.profiles.mkdir()
    try:
        yield client
    finally:
        client.sshwrap("down", "--all")
