"""Use cases of the tunnel runtime: up and restart over many profiles at once; down and
status live in runtime/stop.py and runtime/status.py and are taken from here too."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Profile, RestartPolicy
from sshwrap.errors import (
    ConnectionFailed,
    NotReady,
    SshwrapError,
    StateConflict,
    StateUnusable,
    Unhealthy,
)
from sshwrap.runtime import sockets, state
from sshwrap.runtime.auth import AskSecret, ClientStarter, client_env, secret_for
from sshwrap.runtime.launch import Launched, client_argv, stop_group
from sshwrap.runtime.paths import STATE_DIR_ENV, StatePaths
from sshwrap.runtime.results import (
    DEFAULT_WAIT,
    LOCK_GRACE,
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
    check_wait,
    most_severe,
    parallel,
    select_profiles,
)
from sshwrap.runtime.state import ExpectedForward, Mode, TunnelRecord, expected_forwards
from sshwrap.runtime.status import status
from sshwrap.runtime.stop import _stop_orphan, down, stop_tunnel
from sshwrap.runtime.verify import ListenerView, check_forwards, wait_ready
from sshwrap.runtime.wire import error_from_data
from sshwrap.store import ProfileStore

__all__ = [
    "DEFAULT_WAIT", "STOP_TIMEOUT", "Action", "DownReport", "ForwardStatus", "StatusReport",
    "TunnelOutcome", "TunnelState", "TunnelStatus", "TunnelsReport", "UpReport", "down",
    "most_severe", "restart", "start_selected", "status", "stop_tunnel", "up", "up_selection",
]


def _stop_launched(launched: Launched) -> None:
    # Our own child: until we reap it its pid cannot be reused, so signalling is safe.
    stop_group(launched.pid, timeout=2.0)
    launched.popen.poll()


def runs_in_resident(profile: Profile, share: bool = False) -> bool:
    """True when ``up`` hands the tunnel to the resident supervisor (see start_tunnel)."""
    from sshwrap.runtime.shared import wants_sharing

    return profile.restart is not RestartPolicy.NO and not wants_sharing(profile, share)


def start_tunnel(profile: Profile, paths: StatePaths, facts: HostFacts, *, wait: float,
                 progress: ProgressCallback | None = None,
                 profile_dirs: Sequence[Path] | None = None,
                 secret: str | None = None, share: bool = False,
                 environ: Mapping[str, str] | None = None) -> TunnelOutcome:
    """Start one tunnel and verify it; a no-op when it already runs and is healthy.

    With ``restart = "no"`` the client runs alone; otherwise it is supervised and restarted:
    by the resident supervisor of the state dir, or, on a shared connection (``share`` or
    the profile's ``share_connection``), by a supervisor process of its own that adds the
    forwards to the master and watches it. ``profile_dirs`` tell the supervisor where to
    load the profile from. ``secret`` (a password, say) goes over a private socket or pipe,
    never to argv, environment or state. ``environ`` is the environment of the ``up`` that
    asks (default: ours); the client starts from it.
    """
    from sshwrap.runtime.shared import wants_sharing

    name = profile.name
    try:
        argv = client_argv(profile, facts, paths.log(name))
        digest = state.profile_hash(profile, argv)
        forwards = expected_forwards(profile, facts)
        with state.name_lock(paths, name, timeout=wait + LOCK_GRACE):
            running = _running_outcome(paths, name, digest)
            if running is not None:
                return running
            sharing = wants_sharing(profile, share)
            if progress is not None:
                progress(name, 0, len(forwards))
            if profile.restart is RestartPolicy.NO and not sharing:
                pid, found = _start_alone(profile, paths, argv, digest, forwards, wait=wait,
                                          progress=progress, secret=secret, environ=environ)
                return TunnelOutcome(name, Action.STARTED, pid, found)
            dirs = [str(d.resolve())
                    for d in profile_dirs or ProfileStore.from_option(None).dirs]
            if sharing:
                record = _start_supervisor_process(profile, paths, wait=wait, dirs=dirs,
                                                   secret=secret, share=share, environ=environ)
                found = _forwards_of(record)
            else:
                record, found = _start_resident(profile, paths, wait=wait, dirs=dirs,
                                                secret=secret, environ=environ)
        if progress is not None:
            progress(name, len(forwards), len(forwards))
        return TunnelOutcome(name, Action.STARTED, record.pid, found)
    except SshwrapError as error:
        return TunnelOutcome(name, Action.FAILED, error=error)


def _start_alone(profile: Profile, paths: StatePaths, argv: list[str], digest: str,
                 forwards: tuple[ExpectedForward, ...], *, wait: float,
                 progress: ProgressCallback | None, secret: str | None,
                 environ: Mapping[str, str] | None) -> tuple[int, tuple[ForwardStatus, ...]]:
    """Start the client with no supervisor and verify it (the caller holds the name's lock):
    its pid and forwards. On failure nothing is left running, and the record is kept
    ``failed`` with the reason (removed when the start was interrupted)."""
    name = profile.name
    record = TunnelRecord(
        name=name, pid=0, create_time=0.0, argv=(), profile_hash=digest,
        client=profile.client.value, started_at=time.time(), forwards=forwards,
        log_path=str(paths.log(name)), mode=Mode.ALONE.value)
    starter = ClientStarter(profile, secret, paths.root, base_env=environ)  # see runtime/auth.py
    try:
        launched = starter.start(name, argv, paths.log(name))
    except SshwrapError as error:
        state.write_record(paths, record.failed(error))
        raise
    record = replace(record, pid=launched.pid, create_time=launched.create_time,
                     argv=launched.argv, log_offset=launched.log_offset)
    try:
        state.write_record(paths, record)
        report = None if progress is None else (
            lambda done, total: progress(name, done, total))
        checks = wait_ready(launched, profile, forwards, wait=wait, progress=report)
        state.write_record(paths, record.verified_now())
    except SshwrapError as error:
        _stop_launched(launched)
        if not isinstance(error, StateUnusable):
            state.write_record(paths, record.failed(error))
        raise
    except BaseException:
        _stop_launched(launched)
        state.remove_record(paths, name)
        raise
    finally:
        starter.settle()
    return launched.pid, tuple(ForwardStatus.from_check(c) for c in checks)


#: How long ``up`` gives a new supervisor beyond --wait (Python start-up, first scan).
SUPERVISOR_GRACE = 10.0
def _forwards_of(record: TunnelRecord) -> tuple[ForwardStatus, ...]:
    """The forwards of a verified tunnel as they are now (for the report)."""
    from sshwrap.runtime.verify import LogReader

    log_text = LogReader(Path(record.log_path), record.log_offset).read()
    checks = check_forwards(record.forwards, record.pid,
                            sockets.listening_sockets(pid=record.pid), log_text)
    return tuple(ForwardStatus.from_check(c) for c in checks)


def _start_resident(profile: Profile, paths: StatePaths, *, wait: float, dirs: list[str],
                    secret: str | None, environ: Mapping[str, str] | None,
                    ) -> tuple[TunnelRecord, tuple[ForwardStatus, ...]]:
    """Ask the resident supervisor to run the tunnel (the caller holds the name's lock): its
    verified record, and its forwards as the supervisor found them."""
    from sshwrap.runtime import daemon

    name = profile.name
    env = client_env(profile, base=environ)  # auth: never hand the password variable on
    message = {"op": "start", "name": name, "wait": wait, "dirs": dirs, "env": env,
               "secret": secret}
    try:
        answer = daemon.start_request(paths, message, timeout=wait + SUPERVISOR_GRACE)
    except BaseException as error:
        with contextlib.suppress(OSError, ValueError):
            daemon.request(paths, {"op": "stop", "name": name}, timeout=daemon.STOP_JOIN)
        state.remove_record(paths, name)
        if isinstance(error, TimeoutError):
            raise NotReady(f"{name}: the engine did not report the tunnel ready within "
                           f"{wait + SUPERVISOR_GRACE:g} s", hint=f"see 'sshwrap logs {name}'") \
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
        return record, tuple(ForwardStatus(**found) for found in answer.get("forwards", ()))
    raise (record.failure() if record is not None else None) or StateConflict(
        f"{name}: the engine answered {answer!r} but recorded no verified tunnel",
        hint=f"see {daemon.log_path(paths)}")


def _start_supervisor_process(profile: Profile, paths: StatePaths, *, wait: float,
                              dirs: list[str], secret: str | None, share: bool,
                              environ: Mapping[str, str] | None) -> TunnelRecord:
    """Start a supervisor process for the tunnel, detached; its verified record (caller
    holds the name's lock). The secret is written to its stdin pipe, closed right after."""
    from sshwrap.runtime.detach import spawn_detached
    from sshwrap.runtime.supervisor import supervisor_command

    name = profile.name
    env = client_env(profile, base=environ)  # auth: never hand the password variable on
    env[STATE_DIR_ENV] = str(paths.root)
    if dirs:
        env["SSHWRAP_PROFILES"] = ":".join(dirs)
    log_path = paths.log(name)
    supervisor = spawn_detached(supervisor_command(name, wait=wait, share=share), log_path,
                                env, secret=secret)
    try:
        record = _wait_supervised(supervisor, paths, name, wait + SUPERVISOR_GRACE)
    except BaseException:
        stop_group(supervisor.pid, timeout=STOP_TIMEOUT)
        supervisor.poll()
        state.remove_record(paths, name)
        raise
    if record is None:
        failed = state.read_record(paths, name)
        raise (failed.failure() if failed is not None else None) or ConnectionFailed(
            f"{name}: its supervisor ended with status {supervisor.returncode} before the "
            "tunnel was ready", hint=f"see 'sshwrap logs {name}' ({log_path})")
    return record


def _wait_supervised(supervisor: Any, paths: StatePaths, name: str,
                     timeout: float) -> TunnelRecord | None:
    """The verified record the supervisor wrote; None if it exited first; NotReady at the
    deadline."""
    deadline = time.monotonic() + timeout
    while True:
        exited = supervisor.poll() is not None
        record = state.read_record(paths, name)
        if (record is not None and record.supervisor_pid == supervisor.pid
                and record.verified and record.phase == "up"):
            return record
        if exited:
            return None
        if time.monotonic() >= deadline:
            raise NotReady(f"{name}: the supervisor did not report the tunnel ready within "
                           f"{timeout:g} s", hint=f"see 'sshwrap logs {name}'")
        time.sleep(0.02)


def _running_outcome(paths: StatePaths, name: str, digest: str) -> TunnelOutcome | None:
    """The outcome for a tunnel that already runs; None when it does not (stale state cleaned)."""
    record = state.read_record(paths, name)
    if record is None:
        return None
    if record.supervised and state.live_supervisor(record) is not None and (
            record.phase != "up" or state.live_process(record) is None):
        return TunnelOutcome(
            name, Action.ALREADY_UP, record.supervisor_pid,
            message=f"supervised, {record.phase}: {record.last_failure or 'starting'}")
    # A kept failure (nothing of it runs) ends here too: the user asks again.
    if record.kept_failure or (state.live_supervisor(record) if record.supervised
                               else state.live_process(record)) is None:
        _stop_orphan(record, paths)
        state.remove_record(paths, name)
        return None
    checks = ListenerView().check(record.forwards, record.pid)
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
                   environ: Mapping[str, str] | None = None) -> UpReport:
    """Start profiles chosen by up_selection, in parallel; ``environ`` is the environment
    of the ``up`` that asks (default: ours): password variables and the clients' own."""
    # Read every secret first (terminal input is sequential); none is ever stored.
    secrets = {p.name: secret_for(p, ask_secret, environ) for p in profiles}
    paths = paths or StatePaths.from_env()
    state.check_writable(paths)  # a read-only or full state dir: one error, nothing started
    from sshwrap.machine import host_facts

    facts = host_facts()
    outcomes = parallel(
        profiles, lambda p: start_tunnel(p, paths, facts, wait=wait, progress=progress,
                                         profile_dirs=store.dirs, secret=secrets[p.name],
                                         share=share, environ=environ))
    return TunnelsReport("up", tuple(outcomes))


def restart(store: ProfileStore, names: Sequence[str] = (), *, all_profiles: bool = False,
            tag: str | None = None, wait: float = DEFAULT_WAIT, paths: StatePaths | None = None,
            progress: ProgressCallback | None = None) -> UpReport:
    """Stop, then start again (with the profile as it is now)."""
    check_wait(wait)  # before anything is stopped
    profiles = select_profiles(store, names, all_profiles=all_profiles, tag=tag)
    paths = (paths or StatePaths.from_env()).ensure()
    stopped = down([p.name for p in profiles], paths=paths)
    failed = {o.name: o for o in stopped.outcomes if o.action is Action.FAILED}
    started = up(store, [p.name for p in profiles if p.name not in failed], wait=wait,
                 paths=paths, progress=progress).outcomes if len(failed) < len(profiles) else ()
    by_name = {o.name: o for o in started} | failed
    return TunnelsReport("restart", tuple(by_name[p.name] for p in profiles))
