"""Use cases of the tunnel runtime: up and restart over many profiles at once; down and
status live in usecases/down.py and usecases/status.py and are taken from here too."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Profile
from sshwrap.errors import (
    NotReady,
    SshwrapError,
    StateConflict,
    Unhealthy,
)
from sshwrap.runtime.client.auth import AskSecret, asker_env, secret_for
from sshwrap.runtime.client.launch import launch_argv
from sshwrap.runtime.observe.results import (
    LOCK_GRACE,
    MAX_PARALLEL,
    STOP_TIMEOUT,
    Action,
    DownReport,
    ForwardStatus,
    ProgressCallback,
    StatusReport,
    TunnelOutcome,
    TunnelsReport,
    TunnelState,
    TunnelStatus,
    UpReport,
    most_severe,
    parallel,
)
from sshwrap.runtime.observe.verify import ListenerView, ReadyWatch
from sshwrap.runtime.supervise.hosting import Hosting
from sshwrap.runtime.supervise.shared import wants_sharing
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT
from sshwrap.runtime.system.state import TunnelRecord, expected_forwards
from sshwrap.runtime.system.wire import error_from_data
from sshwrap.store import ProfileStore
from sshwrap.usecases.down import EngineStop, _stop_orphan, down, stop_tunnel
from sshwrap.usecases.selection import check_wait, select_profiles
from sshwrap.usecases.status import status

__all__ = [
    "DEFAULT_WAIT", "STOP_TIMEOUT", "Action", "DownReport", "ForwardStatus", "StatusReport",
    "TunnelOutcome", "TunnelState", "TunnelStatus", "TunnelsReport", "UpReport", "down",
    "most_severe", "restart", "start_selected", "status", "stop_tunnel", "up", "up_selection",
]

#: The engine's own start of a tunnel (runtime/engine/resident.py), called directly by the
#: use cases it serves: no request over its socket to itself.
EngineStart = Callable[[dict[str, Any]], dict[str, Any]]


def start_tunnel(profile: Profile, paths: StatePaths, facts: HostFacts, *, wait: float,
                 progress: ProgressCallback | None = None,
                 profile_dirs: Sequence[Path] | None = None,
                 secret: str | None = None, share: bool = False,
                 environ: Mapping[str, str] | None = None,
                 hosting: Hosting | None = None, ready: ReadyWatch | None = None,
                 engine_start: EngineStart | None = None) -> TunnelOutcome:
    """Start one tunnel and verify it; a no-op when it already runs and is healthy.

    The engine of the state dir runs it, by the profile's restart policy (``restart = "no"``:
    run once, never restarted), alone or on a shared connection (``share`` or the profile's
    ``share_connection``). ``profile_dirs`` tell the engine where to load the profile from.
    ``secret`` (a password, say) goes over the private socket, never to argv, environment or
    state. ``environ`` is the environment of the ``up`` that asks (default: ours); the
    client starts from it. Served by the engine: ``hosting`` its shared connections,
    ``ready`` its listener reads, ``engine_start`` its start of a tunnel.
    """
    name = profile.name
    try:
        # Checks that it can start (nothing is recorded for a profile that cannot): the
        # engine compiles the command it runs from the same profile and facts.
        argv = launch_argv(profile, facts)
        digest = state.profile_hash(profile, facts, argv[0])
        forwards = expected_forwards(profile, facts)
        with state.name_lock(paths, name, timeout=wait + LOCK_GRACE):
            running = _running_outcome(paths, name, digest, hosting, ready)
            if running is not None:
                return running
            if progress is not None:
                progress(name, 0, len(forwards))
            dirs = [str(d.resolve())
                    for d in profile_dirs or ProfileStore.from_option(None).dirs]
            record, found = _start_in_engine(profile, paths, wait=wait, dirs=dirs,
                                             secret=secret, environ=environ, share=share,
                                             local=engine_start, ready=ready)
        if progress is not None:
            progress(name, len(forwards), len(forwards))
        return TunnelOutcome(name, Action.STARTED, record.pid, found)
    except SshwrapError as error:
        return TunnelOutcome(name, Action.FAILED, error=error)


#: How long ``up`` gives a new supervisor beyond --wait (Python start-up, first scan).
SUPERVISOR_GRACE = 10.0
#: Threads of one ``up`` beyond MAX_PARALLEL for tunnels joining shared connections.
MAX_JOINING = 224


def _forwards_of(record: TunnelRecord, ready: ReadyWatch | None) -> tuple[ForwardStatus, ...]:
    """The forwards of a verified tunnel as they are now (for the report)."""
    from sshwrap.runtime.observe.verify import LogReader

    log_text = LogReader(Path(record.log_path), record.log_offset).read()
    checks = ListenerView(ready).check(record.forwards, record.pid, log_text)
    return tuple(ForwardStatus.from_check(c) for c in checks)


def _start_in_engine(profile: Profile, paths: StatePaths, *, wait: float, dirs: list[str],
                     secret: str | None, environ: Mapping[str, str] | None, share: bool,
                     local: EngineStart | None, ready: ReadyWatch | None,
                     ) -> tuple[TunnelRecord, tuple[ForwardStatus, ...]]:
    """Ask the engine to run the tunnel (the caller holds the name's lock; ``local``: the
    engine's own start, when it serves this): its verified record, and its forwards as
    found. A failed first start is raised as it was raised in the engine, and its record
    is kept ``failed``."""
    from sshwrap.runtime.engine import daemon

    name = profile.name
    env = asker_env(profile, environ)  # auth: never hand the password variable on
    message = {"op": "start", "name": name, "wait": wait, "dirs": dirs, "env": env,
               "secret": secret, "share": share}
    from sshwrap.runtime.client.questions import ANSWER_TIMEOUT, PROMPT_ENV

    # A person may be asked a question (a one-time code): the start waits for them too.
    timeout = wait + SUPERVISOR_GRACE + (ANSWER_TIMEOUT if env.get(PROMPT_ENV) else 0.0)
    try:
        answer = daemon.start_request(paths, message, timeout=timeout, local=local)
    except BaseException as error:
        with contextlib.suppress(OSError, ValueError):
            daemon.request(paths, {"op": "stop", "name": name}, timeout=daemon.STOP_JOIN)
        state.remove_record(paths, name)
        if isinstance(error, TimeoutError):
            raise NotReady(f"{name}: the engine did not report the tunnel ready within "
                           f"{timeout:g} s", hint=f"see 'sshwrap logs {name}'") \
                from None
        if isinstance(error, daemon.Unreachable):
            raise StateConflict(f"{name}: the engine went away: {error}",
                                hint=f"see {daemon.log_path(paths)}") from None
        raise
    if answer.get("error") is not None:  # the first attempt's failure, as it was raised
        raise error_from_data(answer["error"])
    record = state.read_record(paths, name)
    if answer.get("code") == 0 and record is not None and record.verified \
            and record.phase == "up":
        found = tuple(ForwardStatus(**f) for f in answer.get("forwards", ()))
        return record, found or _forwards_of(record, ready)
    raise (record.failure() if record is not None else None) or StateConflict(
        f"{name}: the engine answered {answer!r} but recorded no verified tunnel",
        hint=f"see {daemon.log_path(paths)}")


def _running_outcome(paths: StatePaths, name: str, digest: str, hosting: Hosting | None,
                     ready: ReadyWatch | None) -> TunnelOutcome | None:
    """The outcome for a tunnel that already runs; None when it does not (stale state cleaned)."""
    record = state.read_record(paths, name)
    if record is None:
        return None
    # A live supervisor is no running client: up starts one now. The engine stops whatever
    # of the tunnel it still runs (a restart waiting out its backoff, or a supervisor that
    # let go without a record to say so) and starts it anew.
    waiting = record.supervised and state.live_supervisor(record) is not None and (
        record.phase != "up" or state.live_process(record) is None)
    if waiting and state.mode_of(record) is not state.Mode.ENGINE:
        return TunnelOutcome(name, Action.FAILED, error=StateConflict(
            f"{name}: supervised by process {record.supervisor_pid}, {record.phase}, and no "
            f"client runs: {record.last_failure or 'starting'}",
            hint=f"stop it there, or 'sshwrap down {name}' then 'sshwrap up {name}'"))
    # A kept failure (nothing of it runs) ends here too: the user asks again.
    stale = not waiting and (record.kept_failure or (
        state.live_supervisor(record) if record.supervised
        else state.live_process(record)) is None)
    if waiting or stale:
        if stale:
            _stop_orphan(record, paths, hosting)
            state.remove_record(paths, name)
        return None
    checks = ListenerView(ready).check(record.forwards, record.pid)
    statuses = tuple(ForwardStatus.from_check(c) for c in checks)
    if not all(c.healthy for c in checks):
        broken = "; ".join(f"{c.forward.listen}: {c.detail}" for c in checks if not c.healthy)
        return TunnelOutcome(name, Action.FAILED, record.pid, statuses, error=Unhealthy(
            f"{name}: running (pid {record.pid}) but unhealthy: {broken}",
            hint=f"sshwrap restart {name}"))
    if record.profile_hash != digest:
        return TunnelOutcome(
            name, Action.CHANGED, record.pid, statuses,
            message=f"the profile changed since it was started; "
                    f"run 'sshwrap restart {name}' to apply it")
    return TunnelOutcome(name, Action.ALREADY_UP, record.pid, statuses)


def up(store: ProfileStore, names: Sequence[str] = (), *, all_profiles: bool = False,
       tag: str | None = None, wait: float = DEFAULT_WAIT, paths: StatePaths | None = None,
       progress: ProgressCallback | None = None,
       ask_secret: AskSecret | None = None, share: bool = False) -> UpReport:
    """Start the selected tunnels in parallel; each returns only once verified, or failed.

    ``ask_secret`` (hidden terminal input) supplies passwords and passphrases; otherwise a
    password profile's comes from its ``password_env`` variable. ``share`` puts every ssh
    tunnel on a shared connection per destination, as ``share_connection = true`` does."""
    profiles = up_selection(store, names, all_profiles=all_profiles, tag=tag, wait=wait)
    return start_selected(profiles, store, wait=wait, paths=paths, progress=progress,
                          ask_secret=ask_secret, share=share)


def up_selection(store: ProfileStore, names: Sequence[str] = (), *, all_profiles: bool = False,
                 tag: str | None = None, wait: float = DEFAULT_WAIT) -> list[Profile]:
    """Check up's input and select its profiles; InvalidInput, with nothing done, if bad."""
    check_wait(wait)
    return select_profiles(store, names, all_profiles=all_profiles, tag=tag)


def start_selected(profiles: Sequence[Profile], store: ProfileStore, *, wait: float,
                   paths: StatePaths | None = None, progress: ProgressCallback | None = None,
                   ask_secret: AskSecret | None = None, share: bool = False,
                   environ: Mapping[str, str] | None = None,
                   hosting: Hosting | None = None, ready: ReadyWatch | None = None,
                   engine_start: EngineStart | None = None) -> UpReport:
    """Start profiles chosen by up_selection, in parallel; ``environ`` is the environment
    of the ``up`` that asks (default: ours): password variables and the clients' own.
    Served by the engine, ``hosting``, ``ready`` and ``engine_start`` are its own."""
    # Read every secret first (terminal input is sequential); none is ever stored.
    secrets = {p.name: secret_for(p, ask_secret, environ) for p in profiles}
    paths = paths or StatePaths.from_env()
    state.check_writable(paths)  # a read-only or full state dir: one error, nothing started
    from sshwrap.machine import host_facts

    facts = host_facts()
    # At most MAX_PARALLEL new connections at once (sshd drops unauthenticated ones beyond
    # its MaxStartups); tunnels on a shared connection open none, and all join at once.
    joining = sum(wants_sharing(p, share) for p in profiles)
    handshakes = threading.BoundedSemaphore(MAX_PARALLEL)

    def start(profile: Profile) -> TunnelOutcome:
        with contextlib.nullcontext() if wants_sharing(profile, share) else handshakes:
            return start_tunnel(profile, paths, facts, wait=wait, progress=progress,
                                profile_dirs=store.dirs, secret=secrets[profile.name],
                                share=share, environ=environ, hosting=hosting,
                                ready=ready, engine_start=engine_start)

    outcomes = parallel(profiles, start, limit=MAX_PARALLEL + min(joining, MAX_JOINING))
    return TunnelsReport("up", tuple(outcomes))


def restart(store: ProfileStore, names: Sequence[str] = (), *, all_profiles: bool = False,
            tag: str | None = None, wait: float = DEFAULT_WAIT, paths: StatePaths | None = None,
            progress: ProgressCallback | None = None, engine: EngineStop | None = None,
            environ: Mapping[str, str] | None = None,
            hosting: Hosting | None = None, ready: ReadyWatch | None = None,
            engine_start: EngineStart | None = None) -> UpReport:
    """Stop, then start again (with the profile as it is now). Served by the engine,
    ``engine`` is its stop, ``engine_start`` its start, ``hosting`` its shared
    connections, ``ready`` its listener reads and ``environ`` the environment of the
    restart that asks."""
    check_wait(wait)  # before anything is stopped
    profiles = select_profiles(store, names, all_profiles=all_profiles, tag=tag)
    paths = (paths or StatePaths.from_env()).ensure()
    stopped = down([p.name for p in profiles], paths=paths, engine=engine, hosting=hosting)
    failed = {o.name: o for o in stopped.outcomes if o.action is Action.FAILED}
    again = [p for p in profiles if p.name not in failed]
    started = start_selected(again, store, wait=wait, paths=paths, progress=progress,
                             environ=environ, hosting=hosting, ready=ready,
                             engine_start=engine_start).outcomes if again else ()
    by_name = {o.name: o for o in started} | failed
    return TunnelsReport("restart", tuple(by_name[p.name] for p in profiles))
