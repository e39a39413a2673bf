"""sshwrap as a user on the lab's host ``you`` runs it, for every folder whose tests use a lab."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sshwrap.netlab import HostSpec, NetLab, can_run
from sshwrap.netservers import missing


@contextlib.contextmanager
def running_lab(root: Path, hosts: tuple[HostSpec, ...] | None = None,
                *programs: str) -> Iterator[NetLab]:
    """A lab of ``hosts`` (the guides' network by default) up under ``root``, and down
    afterwards; the test is skipped without root, namespaces or one of ``programs``."""
    reason = can_run() or missing(*programs)
    if reason:
        pytest.skip(f"network-namespace scenarios skipped: {reason}")
    network = NetLab(root) if hosts is None else NetLab(root, hosts)
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

    def sshwrap(self, *args: str, timeout: float = 60,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``sshwrap ARGS`` on ``you``; ``env`` adds to its environment."""
        return self.lab.run("you", [sys.executable, "-m", "sshwrap", *args],
                            env={**self.env(), **(env or {})}, timeout=timeout)

    def status(self, name: str) -> dict[str, Any]:
        result = self.sshwrap("status", name, "--json")
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return next(row for row in rows if row["name"] == name)


@contextlib.contextmanager
def lab_client(lab: NetLab, tmp_path: Path) -> Iterator[Client]:
    """A client with empty profiles under ``tmp_path``; every tunnel it ran is stopped after."""
    client = Client(lab, tmp_path / "profiles", tmp_path / "state")
    client.profiles.mkdir()
    try:
        yield client
    finally:
        client.sshwrap("down", "--all")
