"""What the engine hosts of shared connections: masters supervised in its threads, and the
tunnels attached to them. In the engine, which runs every live tunnel of its state dir, the
users of a master are read from its Hosting; in any other process, from the records."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from sshwrap.core.model import Profile
from sshwrap.errors import SshwrapError
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord

#: The phase a shared tunnel records while it leaves its master.
STOPPING = "stopping"
#: ``ssh -O`` clients the engine runs at once: a master answers one at a time, and fifty
#: tunnels joining at once would otherwise start fifty ssh processes on a few cores.
MUX_SLOTS = 4


class HostedMaster(Protocol):
    """A master supervised by a thread of this process (the engine's; runtime/supervise/masters.py);
    re-verified after a network change as a tunnel is (runtime/supervise/netwatch.py)."""

    def stop(self, timeout: float) -> None: ...
    def client_pid(self) -> int | None: ...
    def first_hop(self) -> tuple[str, int] | None: ...
    def drop_connection(self, reason: str) -> None: ...
    def drop_reason(self, pid: int) -> str | None: ...
    def wait_up(self, timeout: float) -> TunnelRecord | None: ...
    def asking_time(self) -> float: ...


class MasterHost(Protocol):
    """Starts the master of a key in a thread of this process (runtime/supervise/masters.py)
    and registers it with ``hosting``; the supervisor's pid."""

    def __call__(self, hosting: Hosting, paths: StatePaths, profile: Profile, key: str,
                 wait: float, *, secret: str | None, env: Mapping[str, str] | None) -> int: ...


class Hosting:
    """What the engine of the state dir ``root`` hosts of shared connections: the masters
    its threads supervise, by key, and the tunnels it runs on each, with their forwards.

    The engine makes one and hands it to every supervisor it runs and every use case it
    serves; without one (any other process), the users of a master are read from the
    records. A tunnel joining or leaving, and a master's check that it is still used, read
    them here instead of every record of the state dir. Its ``mux_slots`` pace the
    engine's ``ssh -O`` clients (runtime/supervise/shared.py mux); any other process runs
    one master, or the few tunnels of one command, and runs its own unpaced."""

    def __init__(self, root: Path, start: MasterHost) -> None:
        self.root = root
        self._start = start
        self._lock = threading.Lock()
        self._masters: dict[str, HostedMaster] = {}
        self._attached: dict[str, dict[str, tuple[ExpectedForward, ...]]] = {}
        self.mux_slots = threading.BoundedSemaphore(MUX_SLOTS)

    def serves(self, paths: StatePaths) -> bool:
        return paths.root == self.root

    def start(self, paths: StatePaths, profile: Profile, key: str, wait: float, *,
              secret: str | None, env: Mapping[str, str] | None) -> int:
        """Have the master of ``key`` supervised in a thread of this process; its pid."""
        return self._start(self, paths, profile, key, wait, secret=secret, env=env)

    def master(self, key: str) -> HostedMaster | None:
        """The master of ``key`` that a thread of this process supervises, if any."""
        with self._lock:
            return self._masters.get(key)

    def masters(self) -> list[HostedMaster]:
        """The masters that threads of this process supervise."""
        with self._lock:
            return list(self._masters.values())

    def add(self, key: str, master: HostedMaster) -> None:
        with self._lock:
            self._masters[key] = master

    def remove(self, key: str, master: HostedMaster) -> None:
        """Forget ``master`` (its thread ended) unless another took its place meanwhile."""
        with self._lock:
            if self._masters.get(key) is master:
                del self._masters[key]

    def attach(self, key: str, name: str, forwards: tuple[ExpectedForward, ...]) -> None:
        """Count the tunnel ``name`` as a user of the master of ``key``, before it asks for
        the master (whose supervisor stops it once unused) until it leaves."""
        with self._lock:
            self._attached.setdefault(key, {})[name] = forwards

    def detach(self, key: str, name: str) -> None:
        """The tunnel ``name`` is stopping: no longer a user of the master of ``key``."""
        with self._lock:
            mine = self._attached.get(key)
            if mine is not None:
                mine.pop(name, None)
                if not mine:
                    del self._attached[key]

    def users(self, key: str, besides: str | None) -> dict[str, tuple[ExpectedForward, ...]]:
        with self._lock:
            mine = self._attached.get(key, {})
            return {name: forwards for name, forwards in mine.items() if name != besides}


def drop_reason(hosting: Hosting | None, paths: StatePaths, key: str, pid: int) -> str | None:
    """Why the master ``pid`` of ``key`` was ended after a network change, when a thread of
    this process (``hosting``'s) supervised it and ended it so."""
    here = hosting.master(key) if hosting is not None and hosting.serves(paths) else None
    return here.drop_reason(pid) if here is not None else None


def users(paths: StatePaths, key: str, *, besides: str | None = None,
          hosting: Hosting | None = None) -> list[str]:
    """Tunnels on the master of ``key`` whose supervisor still runs and is not stopping
    (``besides`` excluded).

    A stopping tunnel says so before it takes the master's lock to leave: of tunnels stopped
    at once, the last to hold the lock sees all others stopping and stops the master, so it
    is gone when ``down --all`` returns.
    """
    return list(user_forwards(paths, key, besides=besides, hosting=hosting))


def user_forwards(paths: StatePaths, key: str, *, besides: str | None = None,
                  hosting: Hosting | None = None) -> dict[str, tuple[ExpectedForward, ...]]:
    """users() with their forwards. In the engine (``hosting``), which runs every live
    tunnel of its state dir, they are its own attached tunnels; elsewhere (``down`` with no
    engine) they are read from the records."""
    if hosting is not None and hosting.serves(paths):
        return hosting.users(key, besides)
    found = {}
    for name in state.recorded_names(paths):
        if name == besides:
            continue
        try:
            record = state.read_record(paths, name)
        except SshwrapError:  # a damaged record is reported by status, not here
            continue
        if record is not None and record.shared == key and record.phase != STOPPING \
                and state.live_supervisor(record):
            found[name] = record.forwards
    return found
