"""Use cases of the tunnel runtime: up, down, restart and status, over many profiles at once."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sshwrap.core import syntax
from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.model import Profile, RestartPolicy
from sshwrap.errors import (
    AuthFailed,
    ConnectionFailed,
    ExitCode,
    ForwardingFailed,
    InvalidInput,
    MissingBinary,
    NotReady,
    Problem,
    ProfileNotFound,
    SshwrapError,
    StateConflict,
    Unhealthy,
)
from sshwrap.runtime import sockets, state, unixsock
from sshwrap.runtime.auth import AskSecret, ClientStarter, client_env, secret_for
from sshwrap.runtime.launch import Launched, client_argv, stop_group, terminate_process
from sshwrap.runtime.paths import STATE_DIR_ENV, StatePaths
from sshwrap.runtime.state import ExpectedForward, TunnelRecord
from sshwrap.runtime.verify import ForwardCheck, ListenerView, check_forwards, wait_ready
from sshwrap.store import ProfileStore

DEFAULT_WAIT = 15.0
STOP_TIMEOUT = 5.0
#: Another ``up`` of the same name may hold the lock for its whole --wait; wait a bit longer.
LOCK_GRACE = 30.0
MAX_PARALLEL = 32

#: The most severe failure decides the exit code of a command over several tunnels.
SEVERITY = (
    ExitCode.INTERNAL, ExitCode.BAD_INPUT, ExitCode.MISSING_BINARY, ExitCode.AUTH,
    ExitCode.CONNECTION, ExitCode.FORWARDING, ExitCode.NOT_READY, ExitCode.UNHEALTHY,
    ExitCode.OK,
)

ProgressCallback = Callable[[str, int, int], None]


def most_severe(codes: Iterable[ExitCode]) -> ExitCode:
    return min(codes, key=SEVERITY.index, default=ExitCode.OK)


class Action(StrEnum):
    STARTED = "started"
    ALREADY_UP = "already-up"
    CHANGED = "changed"  # running, but from an older version of the profile
    FAILED = "failed"
    STOPPED = "stopped"
    NOT_RUNNING = "not-running"
    CLEANED = "cleaned"  # a stale record was removed; its process was gone already


class TunnelState(StrEnum):
    UP = "up"
    DOWN = "down"
    STARTING = "starting"
    FAILED = "failed"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True)
class ForwardStatus:
    type: str
    listen: str
    to: str | None
    healthy: bool
    detail: str

    @classmethod
    def from_check(cls, check: ForwardCheck) -> ForwardStatus:
        f = check.forward
        return cls(f.type, f.listen, f.to, check.healthy, check.detail)

    @classmethod
    def idle(cls, forward: ExpectedForward, detail: str = "not running") -> ForwardStatus:
        return cls(forward.type, forward.listen, forward.to, False, detail)


@dataclass(frozen=True)
class TunnelOutcome:
    """What one command did to one tunnel."""

    name: str
    action: Action
    pid: int | None = None
    forwards: tuple[ForwardStatus, ...] = ()
    message: str = ""
    error: SshwrapError | None = field(default=None, compare=False)

    @property
    def exit_code(self) -> ExitCode:
        return self.error.exit_code if self.error is not None else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        from sshwrap.cli.render import to_jsonable

        return {
            "name": self.name, "action": self.action.value, "pid": self.pid,
            "forwards": to_jsonable(list(self.forwards)), "message": self.message,
            "error": self.error.message if self.error is not None else None,
            "hint": self.error.hint if self.error is not None else None,
            "exit_code": int(self.exit_code),
        }


@dataclass(frozen=True)
class TunnelsReport:
    """The outcome of up, down or restart over one or more tunnels."""

    command: str
    outcomes: tuple[TunnelOutcome, ...]

    @property
    def exit_code(self) -> ExitCode:
        return most_severe(o.exit_code for o in self.outcomes)

    def to_json(self) -> object:
        return [o.to_json() for o in self.outcomes]


UpReport = TunnelsReport
DownReport = TunnelsReport


@dataclass(frozen=True)
class TunnelStatus:
    name: str
    state: TunnelState
    pid: int | None
    uptime: float | None
    restarts: int
    healthy: bool
    forwards: tuple[ForwardStatus, ...]
    changed: bool = False  # running from an older version of the profile
    detail: str = ""
    last_failure: str | None = None
    supervisor_pid: int | None = None
    next_retry: float | None = None  # epoch seconds, while reconnecting
    shared: bool = False  # on a shared connection: pid is the master's (runtime/shared.py)


@dataclass(frozen=True)
class StatusReport:
    tunnels: tuple[TunnelStatus, ...]
    exit_code: ExitCode

    def to_json(self) -> object:
        from sshwrap.cli.render import to_jsonable

        return to_jsonable(list(self.tunnels))


# -- selecting profiles -------------------------------------------------------------------


def select_profiles(store: ProfileStore, names: Sequence[str], *, all_profiles: bool = False,
                    tag: str | None = None) -> list[Profile]:
    """The profiles a command acts on; InvalidInput (nothing done) if any is missing or bad."""
    if not names and not all_profiles and tag is None:
        raise InvalidInput("name at least one profile, or pass --all or --tag TAG")
    if names:
        return store.load_many(dict.fromkeys(names))
    profiles, problems = store.load_all()
    if problems:
        raise InvalidInput(problems, hint="fix or remove these profiles, or name the ones to use")
    if tag is not None:
        profiles = [p for p in profiles if tag in p.tags]
        if not profiles:
            raise InvalidInput(f"--tag: no profile has the tag {tag!r}")
    return profiles


def _check_names(names: Iterable[str]) -> list[str]:
    bad = [n for n in names if not syntax.PROFILE_NAME_RE.fullmatch(n)]
    if bad:
        raise InvalidInput([Problem(f"{n!r} is not a tunnel name", key="NAME") for n in bad])
    return list(dict.fromkeys(names))


def _parallel(items: Sequence[Any], work: Callable[[Any], TunnelOutcome]) -> list[TunnelOutcome]:
    if len(items) <= 1:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(items))) as pool:
        return list(pool.map(work, items))


# -- up -----------------------------------------------------------------------------------


def expected_forwards(profile: Profile, facts: HostFacts) -> tuple[ExpectedForward, ...]:
    return tuple(ExpectedForward.from_forward(f) for f in expanded_forwards(profile, facts))


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
            if profile.restart is RestartPolicy.NO and not sharing:
                pid, found = _start_alone(profile, paths, argv, digest, forwards, wait=wait,
                                          progress=progress, secret=secret, environ=environ)
                return TunnelOutcome(name, Action.STARTED, pid, found)
            if progress is not None:
                progress(name, 0, len(forwards))
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
    its pid and forwards. On failure nothing is left running or recorded."""
    name = profile.name
    starter = ClientStarter(profile, secret, paths.root, base_env=environ)  # see runtime/auth.py
    unixsock.clear_stale_listeners(profile)  # a killed client's socket file blocks a bind
    launched = starter.start(name, argv, paths.log(name))
    record = TunnelRecord(
        name=name, pid=launched.pid, create_time=launched.create_time,
        argv=launched.argv, profile_hash=digest, client=profile.client.value,
        started_at=time.time(), forwards=forwards, log_path=str(launched.log_path),
        log_offset=launched.log_offset)
    try:
        state.write_record(paths, record)
        report = None if progress is None else (
            lambda done, total: progress(name, done, total))
        checks = wait_ready(launched, profile, forwards, wait=wait, progress=report)
        state.write_record(paths, record.verified_now())
    except BaseException:
        _stop_launched(launched)
        state.remove_record(paths, name)
        raise
    finally:
        starter.settle()
    return launched.pid, tuple(ForwardStatus.from_check(c) for c in checks)


#: How long ``up`` gives a new supervisor beyond --wait (Python start-up, first scan).
SUPERVISOR_GRACE = 10.0
#: Exit codes a supervisor reports for a failed first start, and the errors they stand for.
_ERROR_OF_CODE: dict[int, type[SshwrapError]] = {
    int(ExitCode.BAD_INPUT): InvalidInput, int(ExitCode.MISSING_BINARY): MissingBinary,
    int(ExitCode.AUTH): AuthFailed, int(ExitCode.FORWARDING): ForwardingFailed,
    int(ExitCode.CONNECTION): ConnectionFailed, int(ExitCode.NOT_READY): NotReady,
}


def _error_from_record(record: TunnelRecord | None, name: str, returncode: int,
                       log_path: Path) -> SshwrapError:
    if record is not None and record.failure_code is not None and record.last_failure:
        kind = _ERROR_OF_CODE.get(record.failure_code, ConnectionFailed)
        if kind is InvalidInput:
            return InvalidInput(record.last_failure, hint=record.failure_hint)
        return kind(record.last_failure, hint=record.failure_hint)
    return SshwrapError(f"{name}: the supervisor ended with status {returncode} before the "
                        "tunnel was ready", hint=f"see 'sshwrap logs {name}' ({log_path})")


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
            raise NotReady(f"{name}: the supervisor did not report the tunnel ready within "
                           f"{wait + SUPERVISOR_GRACE:g} s", hint=f"see 'sshwrap logs {name}'") \
                from None
        if isinstance(error, daemon.Unreachable):
            raise StateConflict(f"{name}: the resident supervisor went away: {error}",
                                hint=f"see {daemon.log_path(paths)}") from None
        raise
    code = int(answer.get("code", ExitCode.INTERNAL))
    record = state.read_record(paths, name)
    if code == 0 and record is not None and record.verified and record.phase == "up":
        return record, tuple(ForwardStatus(**found) for found in answer.get("forwards", ()))
    state.remove_record(paths, name)
    raise _error_from_record(record, name, code, paths.log(name))


def _start_supervisor_process(profile: Profile, paths: StatePaths, *, wait: float,
                              dirs: list[str], secret: str | None, share: bool,
                              environ: Mapping[str, str] | None) -> TunnelRecord:
    """Start a supervisor process for the tunnel, detached; its verified record (caller
    holds the name's lock). The secret is written to its stdin pipe, closed right after."""
    import subprocess

    from sshwrap.runtime.supervisor import supervisor_command

    name = profile.name
    env = client_env(profile, base=environ)  # auth: never hand the password variable on
    env[STATE_DIR_ENV] = str(paths.root)
    if dirs:
        env["SSHWRAP_PROFILES"] = ":".join(dirs)
    log_path = paths.log(name)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        supervisor = subprocess.Popen(
            supervisor_command(name, wait=wait, share=share), stdin=subprocess.PIPE,
            stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env)
    with contextlib.suppress(BrokenPipeError):
        if supervisor.stdin is None:  # pragma: no cover - stdin=PIPE always sets it
            raise StateConflict(f"{name}: no pipe to the supervisor")
        if secret is not None:
            supervisor.stdin.write(secret.encode() + b"\n")
        supervisor.stdin.close()
    try:
        record = _wait_supervised(supervisor, paths, name, wait + SUPERVISOR_GRACE)
    except BaseException:
        stop_group(supervisor.pid, timeout=STOP_TIMEOUT)
        supervisor.poll()
        state.remove_record(paths, name)
        raise
    if record is None:
        failed = state.read_record(paths, name)
        state.remove_record(paths, name)
        raise _error_from_record(failed, name, supervisor.returncode or 0, log_path)
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
    if (state.live_supervisor(record) if record.supervised
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
    if wait <= 0:
        raise InvalidInput("--wait: must be a positive number of seconds")
    return select_profiles(store, names, all_profiles=all_profiles, tag=tag)


def start_selected(profiles: Sequence[Profile], store: ProfileStore, *, wait: float,
                   paths: StatePaths | None = None, progress: ProgressCallback | None = None,
                   ask_secret: AskSecret | None = None, share: bool = False,
                   environ: Mapping[str, str] | None = None) -> UpReport:
    """Start profiles chosen by up_selection, in parallel; ``environ`` is the environment
    of the ``up`` that asks (default: ours): password variables and the clients' own."""
    # Read every secret first (terminal input is sequential); none is ever stored.
    secrets = {p.name: secret_for(p, ask_secret, environ) for p in profiles}
    paths = (paths or StatePaths.from_env()).ensure()
    from sshwrap.machine import host_facts

    facts = host_facts()
    outcomes = _parallel(
        profiles, lambda p: start_tunnel(p, paths, facts, wait=wait, progress=progress,
                                         profile_dirs=store.dirs, secret=secrets[p.name],
                                         share=share, environ=environ))
    return TunnelsReport("up", tuple(outcomes))


# -- down ---------------------------------------------------------------------------------


def stop_tunnel(name: str, paths: StatePaths, *, timeout: float = STOP_TIMEOUT) -> TunnelOutcome:
    """Stop one tunnel sshwrap started; never signals a process it cannot prove is that one."""
    try:
        with state.name_lock(paths, name, timeout=DEFAULT_WAIT + LOCK_GRACE):
            record = state.read_record(paths, name)
            if record is None:
                return TunnelOutcome(name, Action.NOT_RUNNING)
            if record.supervised:
                return _stop_supervised(record, paths, timeout)
            if state.live_process(record) is None:
                state.remove_record(paths, name)
                return TunnelOutcome(name, Action.CLEANED, record.pid,
                                     message="its process had ended; the stale state is removed")
            if not stop_group(record.pid, timeout=timeout):
                raise StateConflict(f"{name}: pid {record.pid} did not end, even after SIGKILL")
            _wait_released(record, timeout)
            state.remove_record(paths, name)
            return TunnelOutcome(name, Action.STOPPED, record.pid)
    except SshwrapError as error:
        return TunnelOutcome(name, Action.FAILED, error=error)


def _stop_orphan(record: TunnelRecord, paths: StatePaths) -> None:
    """Stop a supervised client whose supervisor is gone (identity checked first); a shared
    tunnel's client is the master of others too: only its forwards are taken off."""
    if record.shared is not None:
        from sshwrap.runtime import shared

        shared.release(paths, record)
    elif state.live_process(record) is not None:
        stop_group(record.pid, timeout=STOP_TIMEOUT)


def _stop_supervised(record: TunnelRecord, paths: StatePaths, timeout: float) -> TunnelOutcome:
    """Have the supervisor stop its client and let go of the tunnel; then make sure of both."""
    from sshwrap.runtime import daemon

    name = record.name
    supervisor = state.live_supervisor(record)
    client = state.live_process(record)
    if supervisor is None and client is None:
        state.remove_record(paths, name)
        return TunnelOutcome(name, Action.CLEANED, record.pid,
                             message="its processes had ended; the stale state is removed")
    graceful = False
    if supervisor is not None and daemon.is_resident(record.supervisor_argv):
        with contextlib.suppress(OSError, ValueError):
            answer = daemon.request(paths, {"op": "stop", "name": name},
                                    timeout=daemon.STOP_JOIN + timeout)
            graceful = bool(answer.get("stopped"))
        # Not graceful: its client is stopped below by its recorded identity; the resident
        # supervisor itself runs other tunnels and is never signalled from here.
    elif supervisor is not None:
        graceful = terminate_process(supervisor.pid, timeout=timeout)
    latest = state.read_record(paths, name) or record  # the client may have been replaced
    if latest.shared is not None:
        # The client is a master other tunnels may use: never stopped from here. A
        # supervisor that stopped on request has left it already.
        if not graceful:
            from sshwrap.runtime import shared

            shared.release(paths, latest)
        _wait_released(latest, timeout)
        state.remove_record(paths, name)
        return TunnelOutcome(name, Action.STOPPED, record.supervisor_pid)
    if state.live_process(latest) is not None and not stop_group(latest.pid, timeout=timeout):
        raise StateConflict(f"{name}: pid {latest.pid} did not end, even after SIGKILL")
    _wait_released(latest, timeout)
    state.remove_record(paths, name)
    return TunnelOutcome(name, Action.STOPPED, record.supervisor_pid)


def _wait_released(record: TunnelRecord, timeout: float) -> None:
    """Wait until no socket of the stopped tunnel is still listening (one scan per poll)."""
    deadline = time.monotonic() + timeout
    while True:
        held = [f.listen for f in record.forwards if f.type != "remote"
                and check_forwards([f], record.pid, sockets.listening_sockets(), None)[0].healthy]
        if not held:
            return
        if time.monotonic() >= deadline:
            raise StateConflict(f"{record.name}: still listening on {', '.join(held)} "
                                "after its process ended")
        time.sleep(0.02)


def down(names: Sequence[str] = (), *, all_tunnels: bool = False,
         paths: StatePaths | None = None, timeout: float = STOP_TIMEOUT) -> DownReport:
    """Stop the named tunnels (or every running one); stopping what is not running is a no-op."""
    if not names and not all_tunnels:
        raise InvalidInput("name at least one tunnel, or pass --all")
    paths = paths or StatePaths.from_env()
    targets = _check_names(names) if names else state.recorded_names(paths)
    outcomes = _parallel(targets, lambda n: stop_tunnel(n, paths, timeout=timeout))
    if all_tunnels and not names:
        from sshwrap.runtime import daemon

        with contextlib.suppress(SshwrapError):  # a supervisor that lingers harms nothing
            daemon.stop_if_idle(paths)
    return TunnelsReport("down", tuple(outcomes))


def restart(store: ProfileStore, names: Sequence[str] = (), *, all_profiles: bool = False,
            tag: str | None = None, wait: float = DEFAULT_WAIT, paths: StatePaths | None = None,
            progress: ProgressCallback | None = None) -> UpReport:
    """Stop, then start again (with the profile as it is now)."""
    profiles = select_profiles(store, names, all_profiles=all_profiles, tag=tag)
    paths = (paths or StatePaths.from_env()).ensure()
    stopped = down([p.name for p in profiles], paths=paths)
    failed = {o.name: o for o in stopped.outcomes if o.action is Action.FAILED}
    started = up(store, [p.name for p in profiles if p.name not in failed], wait=wait,
                 paths=paths, progress=progress).outcomes if len(failed) < len(profiles) else ()
    by_name = {o.name: o for o in started} | failed
    return TunnelsReport("restart", tuple(by_name[p.name] for p in profiles))


# -- status -------------------------------------------------------------------------------


def status(store: ProfileStore, names: Sequence[str] = (),
           paths: StatePaths | None = None) -> StatusReport:
    """Every profile (or the named ones) with state and forward health: one socket scan."""
    paths = paths or StatePaths.from_env()
    recorded = state.recorded_names(paths)
    known = store.paths()
    if names:
        targets = _check_names(names)
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
    except StateConflict as error:
        return TunnelStatus(name, TunnelState.FAILED, None, None, 0, False, idle,
                            detail=error.message)
    if record is not None and record.supervised:
        return _supervised_status(record, profile, paths=paths, facts=facts,
                                  view=view, idle=idle)
    if record is None:
        return TunnelStatus(name, TunnelState.DOWN, None, None, 0, False, idle)
    if state.live_process(record) is None:
        if not state.lock_is_free(paths, name):  # an up or down of it is under way
            return TunnelStatus(name, TunnelState.STARTING, None, None, record.restarts, False,
                                idle)
        state.remove_record(paths, name)
        return TunnelStatus(
            name, TunnelState.FAILED, None, None, record.restarts, False,
            tuple(ForwardStatus.idle(f, "process ended") for f in record.forwards),
            detail=f"pid {record.pid} ended without 'sshwrap down'; its state was removed")
    checks = view.check(record.forwards, record.pid)
    healthy = all(c.healthy for c in checks)
    changed = _profile_changed(record, profile, facts, paths)
    return TunnelStatus(
        name, TunnelState.UP if record.verified else TunnelState.STARTING, record.pid,
        max(0.0, time.time() - record.started_at), record.restarts,
        healthy and record.verified, tuple(ForwardStatus.from_check(c) for c in checks),
        changed=changed)


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
    common: dict[str, Any] = {"restarts": record.restarts, "last_failure": record.last_failure,
                              "supervisor_pid": record.supervisor_pid,
                              "shared": record.shared is not None}
    ended = tuple(ForwardStatus.idle(f, "client not running") for f in record.forwards) or idle
    if supervisor is None and client is None:
        if not state.lock_is_free(paths, name):  # an up or down of it is under way
            return TunnelStatus(name, TunnelState.STARTING, None, None, healthy=False,
                                forwards=ended, **common)
        state.remove_record(paths, name)
        why = record.last_failure if record.phase == "failed" and record.last_failure else \
            f"supervisor pid {record.supervisor_pid} ended without 'sshwrap down'"
        return TunnelStatus(name, TunnelState.FAILED, None, None, healthy=False, forwards=ended,
                            detail=f"{why}; its state was removed", **common)
    if supervisor is None:
        checks = view.check(record.forwards, record.pid)
        return TunnelStatus(
            name, TunnelState.UP, record.pid, max(0.0, time.time() - record.started_at),
            healthy=False, forwards=tuple(ForwardStatus.from_check(c) for c in checks),
            detail=f"its supervisor (pid {record.supervisor_pid}) is gone: nothing restarts "
                   f"it; run 'sshwrap restart {name}'", **common)
    if record.phase == "failed":
        hint = f" ({record.failure_hint})" if record.failure_hint else ""
        return TunnelStatus(name, TunnelState.FAILED, None, None, healthy=False,
                            forwards=ended, detail=f"{record.last_failure}{hint}", **common)
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
    changed = _profile_changed(record, profile, facts, paths)
    return TunnelStatus(
        name, TunnelState.UP if record.phase == "up" else TunnelState.STARTING, record.pid,
        max(0.0, time.time() - record.started_at), healthy=healthy,
        forwards=tuple(ForwardStatus.from_check(c) for c in checks), changed=changed, **common)
