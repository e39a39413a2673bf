"""``status``: every tunnel's state from its record and its processes; failures are kept.

The engine runs this same use case with its live view: the tunnels it runs are taken from
its memory (their records as just written, their clients as it sees them) instead of their
record files and an identity check of two processes each.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Profile
from sshwrap.errors import ConnectionFailed, ExitCode, SshwrapError
from sshwrap.runtime.client.launch import find_program
from sshwrap.runtime.observe.livenums import TableRead, with_numbers
from sshwrap.runtime.observe.results import (
    ForwardStatus,
    StatusReport,
    TunnelState,
    TunnelStatus,
)
from sshwrap.runtime.observe.statusmemory import Compiled, StatusMemory
from sshwrap.runtime.observe.verify import ListenerView, ReadyWatch
from sshwrap.runtime.supervise.hosting import Hosting
from sshwrap.runtime.system import state
from sshwrap.runtime.system.identity import memoized
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import TunnelRecord, expected_forwards, mode_of
from sshwrap.store import ProfileStore
from sshwrap.usecases.selection import check_known


@dataclass(frozen=True)
class Live:
    """A tunnel as the engine that runs it knows it: its record as last written, and whether
    its client runs."""

    record: TunnelRecord
    client_running: bool


def status(store: ProfileStore, names: Sequence[str] = (),
           paths: StatePaths | None = None,
           live: Mapping[str, Live] | None = None,
           hosting: Hosting | None = None, *,
           ready: ReadyWatch | None = None,
           memory: StatusMemory | None = None) -> StatusReport:
    """Every profile (or the named ones) with state and forward health: one socket scan.
    ``live`` is the engine's view of the tunnels it runs, ``hosting`` its shared
    connections, ``ready`` its listener reads and ``memory`` what its earlier statuses
    compiled and found (none from the command line: fresh ones)."""
    paths = paths or StatePaths.from_env()
    live = live or {}
    memory = memory if memory is not None else StatusMemory()
    recorded = sorted(set(state.recorded_names(paths)) | set(live))
    known = store.paths()
    targets = check_known(names, known, recorded) if names else sorted(set(known) | set(recorded))
    from sshwrap.machine import host_facts

    facts = host_facts()
    # The kernel's connections, read meanwhile for the live numbers, when a tunnel may run.
    table = TableRead() if recorded else None
    view = ListenerView(ready)  # one read of the sockets for every row
    with memoized():  # the engine's identity, checked once for all its tunnels
        rows = [_tunnel_status(n, known=known, recorded=recorded, paths=paths, facts=facts,
                               view=view, live=live.get(n), memory=memory, hosting=hosting)
                for n in targets]
    # One read of the kernel's connections for every running row.
    rows = with_numbers(rows, table, hops=memory.hops) if table is not None else rows
    named = set(names)
    unhealthy = any(
        (row.name in named and not row.healthy)
        or row.state in (TunnelState.FAILED, TunnelState.RECONNECTING)
        or (row.state is TunnelState.UP and not row.healthy)
        for row in rows)
    return StatusReport(tuple(rows), ExitCode.UNHEALTHY if unhealthy else ExitCode.OK)


_MODES = frozenset(mode.value for mode in state.Mode)


def _load(known: dict[str, Path], name: str, facts: HostFacts, paths: StatePaths,
          memory: StatusMemory) -> Compiled:
    """The profile found for ``name`` when listing the store (listed once, not per row),
    compiled for these facts and this state dir (the logs' folder), or as compiled before
    while its file stays the same."""
    from sshwrap.store import load_profile_file

    if name not in known:
        return Compiled(None)
    path = known[name]
    text = str(path)  # once: a store's paths are new objects on every listing
    try:
        seen = os.stat(text)
    except OSError:
        return Compiled(None)
    key = (text, (seen.st_ino, seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns))
    root = str(paths.root)
    found = memory.compiled(facts, root, key)
    if found is not None:
        return found
    try:
        profile = load_profile_file(path)
    except SshwrapError:
        return Compiled(None)
    try:
        digest: str | None = state.profile_hash(profile, facts, find_program(profile.client))
    except SshwrapError:
        digest = None
    found = Compiled(profile, tuple(ForwardStatus.idle(f)
                                    for f in expected_forwards(profile, facts)), digest)
    memory.keep(facts, root, key, found)
    return found


def _tunnel_status(name: str, *, known: dict[str, Path], recorded: list[str],
                   paths: StatePaths, facts: HostFacts, view: ListenerView,
                   live: Live | None, memory: StatusMemory,
                   hosting: Hosting | None) -> TunnelStatus:
    compiled = _load(known, name, facts, paths, memory)
    idle = compiled.idle
    if live is not None and not live.record.kept_failure:
        return _supervised_status(live.record, compiled, paths=paths, view=view, idle=idle,
                                  running=(True, live.client_running), hosting=hosting)
    try:  # the engine's memory first: a failure its state dir could not take is kept there
        record = live.record if live is not None else \
            state.read_record(paths, name) if name in recorded else None
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
        with_identity = (state.live_supervisor(record) is not None,
                         state.live_process(record) is not None)
        return _supervised_status(record, compiled, paths=paths, view=view, idle=idle,
                                  running=with_identity, hosting=hosting)
    return _alone_status(record, compiled, paths=paths, view=view, idle=idle, hosting=hosting)


def _alone_status(record: TunnelRecord, compiled: Compiled, *, paths: StatePaths,
                  view: ListenerView, idle: tuple[ForwardStatus, ...],
                  hosting: Hosting | None) -> TunnelStatus:
    """A client that runs with no supervisor: up while its process is the recorded one."""
    name = record.name
    if state.live_process(record) is None:
        if not state.lock_is_free(paths, name):  # an up or down of it is under way
            return TunnelStatus(name, TunnelState.STARTING, None, None, record.restarts, False,
                                idle, mode=mode_of(record).value)
        return _failed_row(_keep_failure(paths, record,
                                         _ended_error(record, compiled.profile), hosting), idle)
    checks = view.check(record.forwards, record.pid)
    healthy = all(c.healthy for c in checks)
    changed = _profile_changed(record, compiled)
    return TunnelStatus(
        name, TunnelState.UP if record.verified else TunnelState.STARTING, record.pid,
        max(0.0, time.time() - record.started_at), record.restarts,
        healthy and record.verified, tuple(ForwardStatus.from_check(c) for c in checks),
        changed=changed, mode=mode_of(record).value)


def _ended_error(record: TunnelRecord, profile: Profile | None) -> SshwrapError:
    """Why a client that ran alone is gone: its log says, else that it ended."""
    from sshwrap.runtime.observe.verify import LogReader, failure_from_log

    ended = f"pid {record.pid} ended without 'sshwrap down'"
    if profile is not None:
        text = LogReader(Path(record.log_path), record.log_offset).read()
        error = failure_from_log(record.name, text, profile)
        return type(error)(f"{ended}: {error.message}", hint=error.hint)
    return ConnectionFailed(ended, hint=f"sshwrap up {record.name}")


def _keep_failure(paths: StatePaths, record: TunnelRecord, error: SshwrapError,
                  hosting: Hosting | None) -> TunnelRecord:
    """Mark the record failed for good and write it; a state dir that cannot be written
    still gets the row shown. A tunnel of a shared connection lets go of its master (whose
    supervisor died with the engine): the master's socket and record go with the last."""
    failed = record.failed(error)
    with contextlib.suppress(SshwrapError):
        state.write_record(paths, failed)
        if record.shared is not None:
            from sshwrap.runtime.supervise.shared import release

            release(paths, failed, cancel=False, hosting=hosting)
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


def _ended_forwards(record: TunnelRecord,
                    idle: tuple[ForwardStatus, ...]) -> tuple[ForwardStatus, ...]:
    return tuple(ForwardStatus.idle(f, "client not running") for f in record.forwards) or idle


def _profile_changed(record: TunnelRecord, compiled: Compiled) -> bool:
    """True when the profile compiles to something else than what the tunnel runs."""
    return compiled.digest is not None and compiled.digest != record.profile_hash


def _supervised_status(record: TunnelRecord, compiled: Compiled, *, paths: StatePaths,
                       view: ListenerView, idle: tuple[ForwardStatus, ...],
                       running: tuple[bool, bool], hosting: Hosting | None) -> TunnelStatus:
    """The truth from both processes: supervisor alive or not, client alive or not
    (``running``, as their identity or the engine tells)."""
    name = record.name
    supervisor, client = running
    mode = state.Mode(record.mode) if record.mode in _MODES else mode_of(record)
    common: dict[str, Any] = {"restarts": record.restarts, "last_failure": record.last_failure,
                              "supervisor_pid": record.supervisor_pid,
                              "shared": record.shared is not None, "mode": mode.value}
    if not supervisor and not client:
        if not state.lock_is_free(paths, name):  # an up or down of it is under way
            return TunnelStatus(name, TunnelState.STARTING, None, None, healthy=False,
                                forwards=_ended_forwards(record, idle), **common)
        who = "its engine" if mode is state.Mode.ENGINE else "its supervisor"
        error = ConnectionFailed(
            f"{who} (pid {record.supervisor_pid}) ended without 'sshwrap down'"
            + (f"; last failure: {record.last_failure}" if record.last_failure else ""),
            hint=f"sshwrap up {name}")
        return _failed_row(_keep_failure(paths, record, error, hosting), idle)
    if not supervisor:
        checks = view.check(record.forwards, record.pid)
        return TunnelStatus(
            name, TunnelState.UP, record.pid, max(0.0, time.time() - record.started_at),
            healthy=False, forwards=tuple(ForwardStatus.from_check(c) for c in checks),
            detail=f"its supervisor (pid {record.supervisor_pid}) is gone: nothing restarts "
                   f"it; run 'sshwrap restart {name}'", **common)
    if not client or record.phase == "reconnecting":
        retry = ""
        if record.next_retry is not None:
            retry = f"; next attempt in {max(0.0, record.next_retry - time.time()):.1f} s"
        hint = f" (hint: {record.failure_hint})" if record.failure_hint else ""
        return TunnelStatus(name, TunnelState.RECONNECTING, None, None, healthy=False,
                            forwards=_ended_forwards(record, idle), next_retry=record.next_retry,
                            detail=f"{record.last_failure or 'client ended'}{retry}{hint}",
                            **common)
    checks = view.check(record.forwards, record.pid)
    healthy = all(c.healthy for c in checks) and record.phase == "up"
    # A reload that could not apply the edited profile: it runs from the older one.
    changed = record.reload_error is not None or _profile_changed(record, compiled)
    return TunnelStatus(
        name, TunnelState.UP if record.phase == "up" else TunnelState.STARTING, record.pid,
        max(0.0, time.time() - record.started_at), healthy=healthy,
        forwards=tuple(ForwardStatus.from_check(c) for c in checks), changed=changed,
        detail=record.reload_error or "", **common)
