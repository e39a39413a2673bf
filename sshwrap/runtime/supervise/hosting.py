"""What this process hosts of shared connections: masters supervised in its threads, and the
tunnels attached to them. In the engine, which runs every live tunnel of its state dir, the
users of a master are read here; in any other process, from the records."""

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


class HostedMaster(Protocol):
    """A master supervised by a thread of this process (the engine's; runtime/supervise/masters.py);
    re-verified after a network change as a tunnel is (runtime/supervise/netwatch.py)."""

    def stop(self, timeout: float) -> None: ...
    def client_pid(self) -> int | None: ...
    def first_hop(self) -> tuple[str, int] | None: ...
    def drop_connection(self, reason: str) -> None: ...
    def drop_reason(self, pid: int) -> str | None: ...
    def wait_up(self, timeout: float) -> TunnelRecord | None: ...


class MasterHost(Protocol):
    """Starts the master of a key in a thread of this process (runtime/supervise/masters.py); the
    supervisor's pid. The engine registers one for its state dir."""

    def __call__(self, paths: StatePaths, profile: Profile, key: str, wait: float, *,
                 secret: str | None, env: Mapping[str, str] | None) -> int: ...


#: What starts the masters of each state dir this process hosts.
_hosts: dict[Path, MasterHost] = {}
#: The masters that threads of this process supervise, by state dir and key.
hosted: dict[tuple[Path, str], HostedMaster] = {}


def host_masters(root: Path, start: MasterHost) -> None:
    """Have the masters of the state dir ``root`` supervised in threads of this process."""
    _hosts[root] = start


def master_host(root: Path) -> MasterHost | None:
    """What starts the masters of the state dir ``root`` in threads of this process, if any."""
    return _hosts.get(root)


def hosted_masters(root: Path) -> list[HostedMaster]:
    """The masters of the state dir ``root`` that threads of this process supervise."""
    return [master for (where, _), master in list(hosted.items()) if where == root]


def drop_reason(paths: StatePaths, key: str, pid: int) -> str | None:
    """Why the master ``pid`` of ``key`` was ended after a network change, when a thread of
    this process supervised it and ended it so."""
    here = hosted.get((paths.root, key))
    return here.drop_reason(pid) if here is not None else None


def users(paths: StatePaths, key: str, *, besides: str | None = None) -> list[str]:
    """Tunnels on the master of ``key`` whose supervisor still runs and is not stopping
    (``besides`` excluded).

    A stopping tunnel says so before it takes the master's lock to leave: of tunnels stopped
    at once, the last to hold the lock sees all others stopping and stops the master, so it
    is gone when ``down --all`` returns.
    """
    return list(user_forwards(paths, key, besides=besides))


def user_forwards(paths: StatePaths, key: str, *,
                  besides: str | None = None) -> dict[str, tuple[ExpectedForward, ...]]:
    """users() with their forwards. In the engine, which runs every live tunnel of its state
    dir, they are its own attached tunnels (attach); elsewhere (``down`` with no engine) they
    are read from the records."""
    if paths.root in _hosts:
        with _attached_lock:
            mine = _attached.get((paths.root, key), {})
            return {name: forwards for name, forwards in mine.items() if name != besides}
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


#: The tunnels on each master that threads of this process (the engine) run, by state dir
#: and key, with their forwards: a tunnel joining or leaving, and a master's check that it is
#: still used, read them here instead of every record of the state dir.
_attached: dict[tuple[Path, str], dict[str, tuple[ExpectedForward, ...]]] = {}
_attached_lock = threading.Lock()


def attach(paths: StatePaths, key: str, name: str,
           forwards: tuple[ExpectedForward, ...]) -> None:
    """Count the tunnel ``name`` of this process as a user of the master of ``key``, before
    it asks for the master (whose supervisor stops it once unused) until it leaves."""
    with _attached_lock:
        _attached.setdefault((paths.root, key), {})[name] = forwards


def detach_user(paths: StatePaths, key: str, name: str) -> None:
    """The tunnel ``name`` is stopping: no longer a user of the master of ``key``."""
    with _attached_lock:
        mine = _attached.get((paths.root, key))
        if mine is not None:
            mine.pop(name, None)
            if not mine:
                del _attached[(paths.root, key)]
