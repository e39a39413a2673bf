"""``status``: every tunnel's state from its record and its processes; failures are kept."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Profile
from sshwrap.errors import ConnectionFailed, ExitCode, Problem, ProfileNotFound, SshwrapError
from sshwrap.runtime import state
from sshwrap.runtime.identity import memoized
from sshwrap.runtime.launch import client_argv
from sshwrap.runtime.paths import StatePaths
from sshwrap.runtime.results import (
    ForwardStatus,
    StatusReport,
    TunnelState,
    TunnelStatus,
    check_names,
)
from sshwrap.runtime.state import TunnelRecord, expected_forwards, mode_of
from sshwrap.runtime.verify import ListenerView
from sshwrap.store import ProfileStore


def status(store: ProfileStore, names: Sequence[str] = (),
           paths: StatePaths | None = None) -> StatusReport:
    """Every profile (or the named ones) with state and forward health: one socket scan."""
    paths = paths or StatePaths.from_env()
    recorded = state.recorded_names(paths)
    known = store.paths()
    if names:
        targets = check_names(names)
        unknown = [n for n in targets if n not in known and n not in recorded]
        if unknown:
            raise ProfileNotFound(
                [Problem(f"no profile or running tunnel named {n!r}", file=n) for n in unknown],
                hint="see 'sshwrap list'")
    else:
        targets = sorted(set(known) | set(recorded))
    from sshwrap.machine import host_facts

    facts = host_facts()
    view = ListenerView()  # one read of the sockets for every row
    with memoized():  # the engine's identity, checked once for all its tunnels
        rows = [_tunnel_status(n, known=known, recorded=recorded, paths=paths,
                               facts=facts, view=view) for n in targets]
    named = set(names)
    unhealthy = any(
        (row.name in named and not row.healthy)
        or row.state in (TunnelState.FAILED, TunnelState.RECONNECTING)
        or (row.state is TunnelState.UP and not row.healthy)
        for row in rows)
    return StatusReport(tuple(rows), ExitCode.UNHEALTHY if unhealthy else ExitCode.OK)


def _load(known: dict[str, Path], name: str) -> Profile | None:
    """The profile found for ``name`` when listing the store (listed once, not per row)."""
    from sshwrap.store import load_profile_file

    if name not in known:
        return None
    try:
        return load_profile_file(known[name])
    except SshwrapError:
        return None


def _tunnel_status(name: str, *, known: dict[str, Path], recorded: list[str],
                   paths: StatePaths, facts: HostFacts,
                   view: ListenerView) -> TunnelStatus:
    profile = _load(known, name)
    idle = tuple(ForwardStatus.idle(f) for f in expected_forwards(profile, facts)) \
        if profile is not None else ()
    try:
        record = state.read_record(paths, name) if name in recorded else None
    except SshwrapError as error:  # a damaged record: this row says so, the others go on
        hint = f" (hint: {error.hint})" if error.hint else ""
        return TunnelStatus(name, TunnelState.FAILED, None, None, 0, False, idle,
                            detail=f"{error.message}{hint}", last_failure=error.message,
                            failure_code=int(error.exit_code))
    if record is None:
        return TunnelStatus(name, TunnelState.DOWN, None, None, 0, False, idle)
    if record.kept_failure:
        return _failed_row(record, idle)
    if record.supervised:
        return _supervised_status(record, profile, paths=paths, facts=facts,
                                  view=view, idle=idle)
    return _alone_status(record, profile, paths=paths, facts=facts, view=view, idle=idle)


def _alone_status(record: TunnelRecord, profile: Profile | None, *, paths: StatePaths,
                  facts: HostFacts, view: ListenerView,
                  idle: tuple[ForwardStatus, ...]) -> TunnelStatus:
    """A client that runs with no supervisor: up while its process is the recorded one."""
    name = record.name
    if state.live_process(record) is None:
        if not state.lock_is_free(paths, name):  # an up or down of it is under way
            return TunnelStatus(name, TunnelState.STARTING, None, None, record.restarts, False,
                                idle, mode=mode_of(record).value)
        return _failed_row(_keep_failure(paths, record, _ended_error(record, profile)), idle)
    checks = view.check(record.forwards, record.pid)
    healthy = all(c.healthy for c in checks)
    changed = _profile_changed(record, profile, facts, paths)
    return TunnelStatus(
        name, TunnelState.UP if record.verified else TunnelState.STARTING, record.pid,
        max(0.0, time.time() - record.started_at), record.restarts,
        healthy and record.verified, tuple(ForwardStatus.from_check(c) for c in checks),
        changed=changed, mode=mode_of(record).value)


def _ended_error(record: TunnelRecord, profile: Profile | None) -> SshwrapError:
    """Why a client that ran alone is gone: its log says, else that it ended."""
    from sshwrap.runtime.verify import LogReader, failure_from_log

    ended = f"pid {record.pid} ended without 'sshwrap down'"
    if profile is not None:
        text = LogReader(Path(record.log_path), record.log_offset).read()
        error = failure_from_log(record.name, text, profile)
        return type(error)(f"{ended}: {error.message}", hint=error.hint)
    return ConnectionFailed(ended, hint=f"sshwrap up {record.name}")


def _keep_failure(paths: StatePaths, record: TunnelRecord, error: SshwrapError) -> TunnelRecord:
    """Mark the record failed for good and write it; a state dir that cannot be written
    still gets the row shown. A tunnel of a shared connection lets go of its master (whose
    supervisor died with the engine): the master's socket and record go with the last."""
    failed = record.failed(error)
    with contextlib.suppress(SshwrapError):
        state.write_record(paths, failed)
        if record.shared is not None:
            from sshwrap.runtime.shared import release

            release(paths, failed, cancel=False)
    return failed


def _failed_row(record: TunnelRecord, idle: tuple[ForwardStatus, ...]) -> TunnelStatus:
    hint = f" (hint: {record.failure_hint})" if record.failure_hint else ""
    forwards = tuple(ForwardStatus.idle(f, "failed") for f in record.forwards) or idle
    return TunnelStatus(
        record.name, TunnelState.FAILED, None, None, record.restarts, False, forwards,
        detail=f"{record.last_failure}{hint}", last_failure=record.last_failure,
        supervisor_pid=record.supervisor_pid, shared=record.shared is not None,
        failure_code=record.failure_code, failed_at=record.failed_at,
        mode=mode_of(record).value)


def _profile_changed(record: TunnelRecord, profile: Profile | None, facts: HostFacts,
                     paths: StatePaths) -> bool:
    """True when the profile compiles to something else than what the tunnel runs."""
    if profile is None:
        return False
    try:
        argv = client_argv(profile, facts, paths.log(record.name))
    except SshwrapError:
        return False
    return state.profile_hash(profile, argv) != record.profile_hash


def _supervised_status(record: TunnelRecord, profile: Profile | None, *, paths: StatePaths,
                       facts: HostFacts, view: ListenerView,
                       idle: tuple[ForwardStatus, ...]) -> TunnelStatus:
    """The truth from both processes: supervisor alive or not, client alive or not."""
    name = record.name
    supervisor = state.live_supervisor(record)
    client = state.live_process(record)
    mode = mode_of(record)
    common: dict[str, Any] = {"restarts": record.restarts, "last_failure": record.last_failure,
                              "supervisor_pid": record.supervisor_pid,
                              "shared": record.shared is not None, "mode": mode.value}
    ended = tuple(ForwardStatus.idle(f, "client not running") for f in record.forwards) or idle
    if supervisor is None and client is None:
        if not state.lock_is_free(paths, name):  # an up or down of it is under way
            return TunnelStatus(name, TunnelState.STARTING, None, None, healthy=False,
                                forwards=ended, **common)
        who = "its engine" if mode is state.Mode.ENGINE else "its supervisor"
        error = ConnectionFailed(
            f"{who} (pid {record.supervisor_pid}) ended without 'sshwrap down'"
            + (f"; last failure: {record.last_failure}" if record.last_failure else ""),
            hint=f"sshwrap up {name}")
        return _failed_row(_keep_failure(paths, record, error), idle)
    if supervisor is None:
        checks = view.check(record.forwards, record.pid)
        return TunnelStatus(
            name, TunnelState.UP, record.pid, max(0.0, time.time() - record.started_at),
            healthy=False, forwards=tuple(ForwardStatus.from_check(c) for c in checks),
            detail=f"its supervisor (pid {record.supervisor_pid}) is gone: nothing restarts "
                   f"it; run 'sshwrap restart {name}'", **common)
    if client is None or record.phase == "reconnecting":
        retry = ""
        if record.next_retry is not None:
            retry = f"; next attempt in {max(0.0, record.next_retry - time.time()):.1f} s"
        hint = f" (hint: {record.failure_hint})" if record.failure_hint else ""
        return TunnelStatus(name, TunnelState.RECONNECTING, None, None, healthy=False,
                            forwards=ended, next_retry=record.next_retry,
                            detail=f"{record.last_failure or 'client ended'}{retry}{hint}",
                            **common)
    checks = view.check(record.forwards, record.pid)
    healthy = all(c.healthy for c in checks) and record.phase == "up"
    # A reload that could not apply the edited profile: it runs from the older one.
    changed = record.reload_error is not None or _profile_changed(record, profile, facts, paths)
    return TunnelStatus(
        name, TunnelState.UP if record.phase == "up" else TunnelState.STARTING, record.pid,
        max(0.0, time.time() - record.started_at), healthy=healthy,
        forwards=tuple(ForwardStatus.from_check(c) for c in checks), changed=changed,
        detail=record.reload_error or "", **common)
