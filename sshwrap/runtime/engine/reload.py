"""Reload: apply edited profiles to the engine's running tunnels, restarting only those whose
client changed; a deleted profile's tunnel stops, an invalid one's keeps running as it was."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sshwrap.core.model import Profile
from sshwrap.errors import ExitCode, ProfileNotFound, SshwrapError
from sshwrap.runtime.supervise.events import Event, EventBus
from sshwrap.runtime.supervise.supervisor import Supervisor
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.wire import error_data, error_from_data


class Tunnel(Protocol):
    """A tunnel of the engine (runtime/engine/resident.py, which imports this module)."""

    supervisor: Supervisor
    message: dict[str, Any] | None


class ResidentSupervisor(Protocol):
    """What a reload needs of the engine."""

    paths: StatePaths
    lock: threading.Lock
    events: EventBus

    @property
    def tunnels(self) -> Mapping[str, Tunnel]: ...
    def stop(self, name: str) -> bool: ...
    def start(self, message: dict[str, Any], profile: Profile | None = None,
              ) -> dict[str, Any]: ...

#: What a reload did to one tunnel.
UNCHANGED, UPDATED, RESTARTED, STOPPED, INVALID, FAILED = (
    "unchanged", "updated", "restarted", "stopped", "invalid", "failed")
#: How long a reload waits for another up or down of the same tunnel to finish.
LOCK_WAIT = 30.0
#: How long ``sshwrap reload`` waits for the engine: every changed tunnel is restarted and
#: verified in turn.
RELOAD_TIMEOUT = 300.0


def reload_tunnels(engine: ResidentSupervisor) -> dict[str, Any]:
    """Reload every tunnel the engine runs, one after the other; what happened to each, as
    ``{"tunnels": [{"name", "action", "error"?, "pid"?}]}``."""
    with engine.lock:
        tunnels = sorted(engine.tunnels.items())
    return {"tunnels": [_reload_one(engine, name, tunnel) for name, tunnel in tunnels]}


def _reload_one(engine: ResidentSupervisor, name: str, tunnel: Tunnel) -> dict[str, Any]:
    try:
        with state.name_lock(engine.paths, name, timeout=LOCK_WAIT):
            if engine.tunnels.get(name) is not tunnel:  # stopped or restarted meanwhile
                return {"name": name, "action": UNCHANGED}
            return _apply(engine, name, tunnel)
    except SshwrapError as error:
        return {"name": name, "action": FAILED, "error": error_data(error)}


def _apply(engine: ResidentSupervisor, name: str, tunnel: Tunnel) -> dict[str, Any]:
    from sshwrap.machine import host_facts
    from sshwrap.runtime.client.launch import launch_argv

    supervisor = tunnel.supervisor
    try:  # the engine's tunnels have a store; one without keeps its profile
        store = supervisor.store
        profile = store.load(name) if store is not None else supervisor.requested
    except ProfileNotFound:
        engine.stop(name)
        return {"name": name, "action": STOPPED}
    except SshwrapError as error:  # invalid now: the tunnel runs on as it was
        _tell_not_applied(engine, tunnel, error)
        return {"name": name, "action": INVALID, "error": error_data(error)}
    facts = host_facts()
    argv = launch_argv(profile, facts)  # one that cannot start leaves the tunnel as it is
    record = supervisor.record
    if record is not None and record.profile_hash == state.profile_hash(profile, facts,
                                                                        argv[0]):
        _clear_not_applied(engine, name)
        # Compared as written: the running profile has ports chosen for ``listen = 0``.
        changed = supervisor.requested != profile
        supervisor.requested = profile
        if supervisor.profile is not None:  # the same client: only its hooks can differ
            supervisor.profile = replace(supervisor.profile, hooks=profile.hooks)
        return {"name": name, "action": UPDATED if changed else UNCHANGED}
    engine.stop(name)
    if tunnel.message is None:  # not started by a request: nothing to start again
        return {"name": name, "action": STOPPED}
    answer = engine.start(tunnel.message, profile)
    if answer.get("error") is not None:
        return {"name": name, "action": FAILED, "error": answer["error"]}
    fresh = state.read_record(engine.paths, name)
    return {"name": name, "action": RESTARTED, "pid": fresh.pid if fresh else None}


def _tell_not_applied(engine: ResidentSupervisor, tunnel: Tunnel, error: SshwrapError) -> None:
    """The error goes to the record (``status`` shows it), to the followers and to the log."""
    supervisor = tunnel.supervisor
    reason = f"the edited profile was not applied: {error.message}"
    record = note_not_applied(supervisor, reason)
    supervisor.say(reason)
    phase = record.phase if record is not None else "starting"
    engine.events.publish(Event(
        time=time.time(), name=supervisor.name, from_state=phase, to_state=phase,
        reason=reason, pid=record.pid if record is not None else None,
        restarts=record.restarts if record is not None else 0))


def _clear_not_applied(engine: ResidentSupervisor, name: str) -> None:
    tunnel = engine.tunnels.get(name)
    if tunnel is not None and tunnel.supervisor.record is not None \
            and tunnel.supervisor.record.reload_error:
        note_not_applied(tunnel.supervisor, None)


def note_not_applied(supervisor: Supervisor, reason: str | None) -> state.TunnelRecord | None:
    """Note (or clear, with None) on a running tunnel's record that its edited profile was not
    applied. The change goes through the supervisor, the record's one writer at a time: the
    tunnel's own thread may be recording a new phase at the same instant, and neither change
    is lost. The record as written."""
    return supervisor.amend(lambda record: record.not_applied(reason))


# -- the asker's side: sshwrap reload -------------------------------------------------------


@dataclass(frozen=True)
class ReloadOutcome:
    name: str
    action: str
    pid: int | None = None
    error: SshwrapError | None = None


@dataclass(frozen=True)
class ReloadReport:
    outcomes: tuple[ReloadOutcome, ...]
    engine_running: bool = True

    @property
    def exit_code(self) -> ExitCode:
        """The most severe error's code: a profile not applied is bad input."""
        codes = [o.error.exit_code for o in self.outcomes if o.error is not None]
        return max(codes, default=ExitCode.OK)

    def to_json(self) -> dict[str, Any]:
        return {"engine_running": self.engine_running, "tunnels": [
            {"name": o.name, "action": o.action, "pid": o.pid,
             "error": error_data(o.error) if o.error is not None else None}
            for o in self.outcomes], "exit_code": int(self.exit_code)}


def reload(paths: StatePaths | None = None, *, timeout: float = RELOAD_TIMEOUT) -> ReloadReport:
    """Ask the engine of ``paths`` to reload; with no engine, nothing runs and nothing is done."""
    from sshwrap.runtime.engine import daemon

    paths = paths or StatePaths.from_env()
    try:
        answer = daemon.request(paths, {"op": "reload"}, timeout=timeout)
    except daemon.Unreachable:
        return ReloadReport((), engine_running=False)
    return ReloadReport(tuple(
        ReloadOutcome(str(t["name"]), str(t["action"]), t.get("pid"),
                      error_from_data(t["error"]) if t.get("error") else None)
        for t in answer.get("tunnels", ())))
