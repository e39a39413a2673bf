"""Fixtures of the events, hooks and reload tests: the runtime tests' state dir and profiles,
and ``sshwrap events --json`` run as a real follower."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system.paths import StatePaths
from tests.runtime.conftest import runtime_paths, store, write_profile
from tests.runtime.tunnel_helpers import SETTLE, eventually

__all__ = ["Follower", "follower", "runtime_paths", "store", "write_profile"]


class Follower:
    """``sshwrap events --json`` in a process of its own; its lines parsed as they come."""

    def __init__(self, paths: StatePaths, *names: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sshwrap", "events", "--json", *names],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "SSHWRAP_STATE_DIR": str(paths.root)})
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Subscribed once the engine it started counts it: nothing after this is missed.
        eventually(lambda: _followers(paths) >= 1, "the follower subscribed")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))  # every line is one JSON object

    def until(self, name: str, to_state: str) -> list[dict[str, Any]]:
        """Every event up to the first of ``name`` entering ``to_state`` (inclusive)."""
        seen: list[dict[str, Any]] = []
        while True:
            try:
                event = self.lines.get(timeout=SETTLE)
            except queue.Empty:
                raise AssertionError(f"no event of {name} -> {to_state}; saw {seen}") from None
            seen.append(event)
            if event["name"] == name and event["to_state"] == to_state:
                return seen

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(SETTLE)


def _followers(paths: StatePaths) -> int:
    try:
        return int(daemon.request(paths, {"op": "ping"}, timeout=5).get("followers", 0))
    except (daemon.Unreachable, OSError):
        return 0


@pytest.fixture
def follower(runtime_paths: StatePaths) -> Iterator[type[Follower]]:
    """Start followers with ``follower(paths, *names)``; each is ended at the test's end."""
    started: list[Follower] = []

    class Tracked(Follower):
        def __init__(self, paths: StatePaths, *names: str) -> None:
            super().__init__(paths, *names)
            started.append(self)

    yield Tracked
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
            one.process.wait()
