"""``down``: stop tunnels, signalling only processes proved to be theirs.

The engine runs this same use case, stopping the tunnels it runs directly; the command line
runs it only when no engine serves the state dir (a tunnel's record still names what ran).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

from sshwrap.errors import InvalidInput, SshwrapError, StateConflict, StateUnusable
from sshwrap.runtime.client import launch
from sshwrap.runtime.client.launch import stop_group, terminate_process
from sshwrap.runtime.observe.results import (
    LOCK_GRACE,
    STOP_TIMEOUT,
    Action,
    DownReport,
    TunnelOutcome,
    TunnelsReport,
    parallel,
)
from sshwrap.runtime.observe.verify import ListenerView
from sshwrap.runtime.supervise.hosting import Hosting
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord
from sshwrap.usecases.selection import check_names

#: How the engine is told to stop one of its tunnels: True once it has let go of it.
EngineStop = Callable[[str], bool]


def asking_engine(paths: StatePaths, timeout: float = STOP_TIMEOUT) -> EngineStop:
    """Stopping through the engine's socket (from outside it); False when none answers."""
    from sshwrap.runtime.engine import daemon

    def ask(name: str) -> bool:
        with contextlib.suppress(OSError, ValueError):
            answer = daemon.request(paths, {"op": "stop", "name": name},
                                    timeout=daemon.STOP_JOIN + timeout)
            return bool(answer.get("stopped"))
        return False

    return ask


def stop_tunnel(name: str, paths: StatePaths, *, timeout: float = STOP_TIMEOUT,
                engine: EngineStop | None = None,
                hosting: Hosting | None = None) -> TunnelOutcome:
    """Stop one tunnel sshwrap started; never signals a process it cannot prove is that one.
    ``engine`` stops a tunnel the engine runs (the engine passes its own stop, and
    ``hosting``, its shared connections)."""
    engine = engine or asking_engine(paths, timeout)
    try:
        with state.name_lock(paths, name, timeout=DEFAULT_WAIT + LOCK_GRACE):
            try:
                record = state.read_record(paths, name)
            except StateUnusable as damaged:
                return _stop_damaged(name, paths, damaged, timeout, engine)
            if record is None:
                return TunnelOutcome(name, Action.NOT_RUNNING)
            if record.kept_failure:
                _stop_orphan(record, paths, hosting)
                state.remove_record(paths, name)
                return TunnelOutcome(name, Action.CLEANED, record.pid or None,
                                     message=f"it had failed ({record.last_failure}); "
                                             "its state is removed")
            if record.supervised:
                return _stop_supervised(record, paths, timeout, engine, hosting)
            return _stop_alone(record, paths, timeout)
    except SshwrapError as error:
        return TunnelOutcome(name, Action.FAILED, error=error)


def _stop_alone(record: TunnelRecord, paths: StatePaths, timeout: float) -> TunnelOutcome:
    name = record.name
    if state.live_process(record) is None:
        state.remove_record(paths, name)
        return TunnelOutcome(name, Action.CLEANED, record.pid,
                             message="its process had ended; the stale state is removed")
    if not stop_group(record.pid, timeout=timeout):
        raise StateConflict(f"{name}: pid {record.pid} did not end, even after SIGKILL")
    _wait_released(record, timeout)
    state.remove_record(paths, name)
    return TunnelOutcome(name, Action.STOPPED, record.pid)


def _stop_damaged(name: str, paths: StatePaths, damaged: StateUnusable,
                  timeout: float, engine: EngineStop) -> TunnelOutcome:
    """A tunnel whose record cannot be read: the engine lets go of it, its client is found by
    its identity (runtime/system/identity.py) and stopped, and the record goes."""
    from sshwrap.runtime.system.identity import tunnel_clients

    clients = tunnel_clients(paths.log(name))
    engine(name)  # the engine stops it if it runs it
    for client in clients:
        if not launch.process_gone(client.pid) and not stop_group(client.pid, timeout=timeout):
            raise StateConflict(f"{name}: pid {client.pid} did not end, even after SIGKILL")
    with state.state_errors(paths):
        state.remove_record(paths, name)
    why = f"its record was damaged ({damaged.message})"
    if not clients:
        return TunnelOutcome(name, Action.CLEANED, message=f"{why}; it is removed")
    return TunnelOutcome(name, Action.STOPPED, clients[0].pid,
                         message=f"{why}; its client was found by its identity")


def _stop_orphan(record: TunnelRecord, paths: StatePaths,
                 hosting: Hosting | None = None) -> None:
    """Stop a supervised client whose supervisor is gone (identity checked first); a shared
    tunnel's client is the master of others too: only its forwards are taken off."""
    if record.shared is not None:
        from sshwrap.runtime.supervise import shared

        shared.release(paths, record, hosting=hosting)
    elif state.live_process(record) is not None:
        stop_group(record.pid, timeout=STOP_TIMEOUT)


def _stop_supervised(record: TunnelRecord, paths: StatePaths, timeout: float,
                     engine: EngineStop, hosting: Hosting | None) -> TunnelOutcome:
    """Have the supervisor stop its client and let go of the tunnel; then make sure of both."""
    from sshwrap.runtime.engine import daemon

    name = record.name
    supervisor = state.live_supervisor(record)
    client = state.live_process(record)
    if supervisor is None and client is None:
        _stop_orphan(record, paths, hosting)  # a shared connection's master may be left to clean
        state.remove_record(paths, name)
        return TunnelOutcome(name, Action.CLEANED, record.pid,
                             message="its processes had ended; the stale state is removed")
    graceful = False
    if supervisor is not None and daemon.is_resident(record.supervisor_argv):
        graceful = engine(name)
        # Not graceful: its client is stopped below by its recorded identity; the resident
        # supervisor itself runs other tunnels and is never signalled from here.
    elif supervisor is not None:
        graceful = terminate_process(supervisor.pid, timeout=timeout)
    latest = state.read_record(paths, name) or record  # the client may have been replaced
    if latest.shared is not None:
        # The client is a master other tunnels may use: never stopped from here. A
        # supervisor that stopped on request has left it already.
        if not graceful:
            from sshwrap.runtime.supervise import shared

            shared.release(paths, latest, hosting=hosting)
        _wait_released(latest, timeout)
        state.remove_record(paths, name)
        return TunnelOutcome(name, Action.STOPPED, latest.pid)
    if state.live_process(latest) is not None and not stop_group(latest.pid, timeout=timeout):
        raise StateConflict(f"{name}: pid {latest.pid} did not end, even after SIGKILL")
    _wait_released(latest, timeout)
    state.remove_record(paths, name)
    return TunnelOutcome(name, Action.STOPPED, latest.pid)


def _wait_released(record: TunnelRecord, timeout: float) -> None:
    """Wait until no socket of the stopped tunnel is still listening (one read per poll)."""
    deadline = time.monotonic() + timeout
    listening = [f for f in record.forwards if f.type != "remote"]
    while True:
        held = _still_held(listening, record.pid)
        if not held:
            return
        if time.monotonic() >= deadline:
            raise StateConflict(f"{record.name}: still listening on {', '.join(held)} "
                                "after its process ended")
        time.sleep(0.02)


def _still_held(forwards: Sequence[ExpectedForward], pid: int) -> list[str]:
    """The listen addresses of ``forwards`` that ``pid`` still holds (one read of the
    listening table; every process is scanned only if something listens on their ports)."""
    return [c.forward.listen for c in ListenerView().check(forwards, pid) if c.healthy]


def down(names: Sequence[str] = (), *, all_tunnels: bool = False,
         paths: StatePaths | None = None, timeout: float = STOP_TIMEOUT,
         engine: EngineStop | None = None, running: Sequence[str] = (),
         hosting: Hosting | None = None) -> DownReport:
    """Stop the named tunnels (or every running one); stopping what is not running is a no-op.
    Served by the engine, ``engine`` is its stop, ``running`` the tunnels it runs (the
    engine itself decides whether to exit after ``--all``) and ``hosting`` its shared
    connections."""
    if not names and not all_tunnels:
        raise InvalidInput("name at least one tunnel, or pass --all")
    paths = paths or StatePaths.from_env()
    targets = check_names(names) if names else sorted(
        set(state.recorded_names(paths)) | set(running))

    def stop(name: str) -> TunnelOutcome:
        try:
            if not state.ever_locked(paths, name):  # nothing to stop: nothing made for it
                return TunnelOutcome(name, Action.NOT_RUNNING)
        except SshwrapError as error:
            return TunnelOutcome(name, Action.FAILED, error=error)
        return stop_tunnel(name, paths, timeout=timeout, engine=engine, hosting=hosting)

    outcomes = parallel(targets, stop)
    if all_tunnels and not names and engine is None:
        from sshwrap.runtime.engine import daemon

        with contextlib.suppress(SshwrapError):  # a supervisor that lingers harms nothing
            daemon.stop_if_idle(paths)
    return TunnelsReport("down", tuple(outcomes))
