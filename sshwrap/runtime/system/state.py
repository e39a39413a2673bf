"""Versioned per-tunnel records, the per-name lock, and pid-reuse-safe liveness checks."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.model import Forward, Profile, TcpAddress, UnixAddress
from sshwrap.core.unparse import profile_to_mapping
from sshwrap.errors import ExitCode, SshwrapError, StateConflict, StateUnusable
from sshwrap.runtime.system.detach import is_engine
from sshwrap.runtime.system.identity import identified
from sshwrap.runtime.system.paths import STATE_DIR_ENV, StatePaths, open_private

if TYPE_CHECKING:
    import psutil

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ExpectedForward:
    """One compiled (expanded) forward the tunnel must provide: what verification checks."""

    type: str
    listen: str
    to: str | None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    far_side: str | None = field(default=None, compare=False)  # proof at start: farside.py

    @classmethod
    def from_forward(cls, forward: Forward) -> ExpectedForward:
        to = forward.to.render() if forward.to is not None else None
        listen = forward.listen
        if isinstance(listen, UnixAddress):
            return cls(forward.type.value, listen.render(), to, path=listen.path)
        if not isinstance(listen, TcpAddress):  # pragma: no cover - Address is TCP or unix
            raise TypeError(f"unknown address {listen!r}")
        return cls(forward.type.value, listen.render(), to, host=listen.host, port=listen.port)


@dataclass(frozen=True)
class TunnelRecord:
    """What ``up`` wrote about a tunnel it started; enough to recognise and stop its process."""

    name: str
    pid: int
    create_time: float
    argv: tuple[str, ...]
    profile_hash: str
    client: str
    started_at: float
    forwards: tuple[ExpectedForward, ...]
    log_path: str
    log_offset: int = 0
    verified: bool = False
    restarts: int = 0
    last_failure: str | None = None
    # Supervised tunnels: the supervisor that owns the client (None: the client runs alone).
    supervisor_pid: int | None = None
    supervisor_create_time: float = 0.0
    supervisor_argv: tuple[str, ...] = ()
    #: starting, up, reconnecting or failed, as the supervisor last saw it
    phase: str = "starting"
    #: the exit code and hint of the last failure, so that ``up`` can report it faithfully
    failure_code: int | None = None
    failure_hint: str = ""
    next_retry: float | None = None  # epoch seconds of the next attempt while reconnecting
    #: The key of the shared connection (supervise/shared.py) whose master carries the forwards;
    #: then pid, create_time and argv are the master's, which this tunnel must never stop.
    shared: str | None = None
    #: How the tunnel runs (Mode); older records leave it to be inferred (``mode_of``).
    mode: str = ""
    #: The class of the last failure's error (runtime/system/wire.py), and when it happened.
    failure_kind: str = ""
    failed_at: float | None = None
    #: Why the last reload did not apply the edited profile (it runs from the older one).
    reload_error: str | None = None
    version: int = field(default=SCHEMA_VERSION)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "name": self.name, "pid": self.pid,
            "create_time": self.create_time, "argv": list(self.argv),
            "profile_hash": self.profile_hash, "client": self.client,
            "started_at": self.started_at,
            "forwards": [vars(f) for f in self.forwards],
            "log_path": self.log_path, "log_offset": self.log_offset,
            "verified": self.verified, "restarts": self.restarts,
            "last_failure": self.last_failure,
            "supervisor_pid": self.supervisor_pid,
            "supervisor_create_time": self.supervisor_create_time,
            "supervisor_argv": list(self.supervisor_argv), "phase": self.phase,
            "failure_code": self.failure_code, "failure_hint": self.failure_hint,
            "next_retry": self.next_retry, "shared": self.shared, "mode": self.mode,
            "failure_kind": self.failure_kind, "failed_at": self.failed_at,
            "reload_error": self.reload_error,
        }

    @classmethod
    def from_json(cls, data: object) -> TunnelRecord:
        """Raise ValueError for a record of another schema version or a damaged one."""
        if not isinstance(data, dict):
            raise ValueError(f"not a record but a JSON {type(data).__name__}")
        if data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"record schema version {data.get('version')!r} is not "
                             f"{SCHEMA_VERSION}")
        try:
            return cls(
                name=str(data["name"]), pid=int(data["pid"]),
                create_time=float(data["create_time"]),
                argv=tuple(str(a) for a in data["argv"]),
                profile_hash=str(data["profile_hash"]), client=str(data["client"]),
                started_at=float(data["started_at"]),
                forwards=tuple(ExpectedForward(**f) for f in data["forwards"]),
                log_path=str(data["log_path"]), log_offset=int(data.get("log_offset", 0)),
                verified=bool(data.get("verified", False)),
                restarts=int(data.get("restarts", 0)), last_failure=data.get("last_failure"),
                supervisor_pid=_optional_int(data.get("supervisor_pid")),
                supervisor_create_time=float(data.get("supervisor_create_time", 0.0)),
                supervisor_argv=tuple(str(a) for a in data.get("supervisor_argv", ())),
                phase=str(data.get("phase", "up" if data.get("verified") else "starting")),
                failure_code=_optional_int(data.get("failure_code")),
                failure_hint=str(data.get("failure_hint", "")),
                next_retry=None if data.get("next_retry") is None
                else float(data["next_retry"]),
                shared=None if data.get("shared") is None else str(data["shared"]),
                mode=str(data.get("mode", "")),
                failure_kind=str(data.get("failure_kind", "")),
                failed_at=None if data.get("failed_at") is None else float(data["failed_at"]),
                reload_error=None if data.get("reload_error") is None
                else str(data["reload_error"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"a field is missing or wrong: {exc}") from None

    def not_applied(self, reason: str | None) -> TunnelRecord:
        """The record with (or, None, without) a reload's reason for not applying a profile."""
        return replace(self, reload_error=reason)

    def verified_now(self) -> TunnelRecord:
        return replace(self, verified=True, phase="up")

    def failed(self, error: SshwrapError, *, at: float | None = None) -> TunnelRecord:
        """This record marked failed by ``error``: kept, with its reason, exit code and time,
        until the user runs ``up`` or ``down`` for the tunnel."""
        from sshwrap.runtime.system.wire import error_data

        data = error_data(error)
        return replace(self, phase="failed", verified=False, next_retry=None,
                       last_failure=error.message, failure_code=data["exit_code"],
                       failure_hint=error.hint, failure_kind=data["kind"],
                       failed_at=time.time() if at is None else at)

    def failure(self) -> SshwrapError | None:
        """The error the record was marked failed by, as it was raised; None when none."""
        if self.phase != "failed" or not self.last_failure:
            return None
        from sshwrap.runtime.system.wire import error_from_data

        return error_from_data({"kind": self.failure_kind, "message": self.last_failure,
                                "hint": self.failure_hint,
                                "exit_code": self.failure_code or int(ExitCode.CONNECTION)})

    @property
    def supervised(self) -> bool:
        return self.supervisor_pid is not None

    @property
    def kept_failure(self) -> bool:
        """A failed tunnel whose record is kept for the user to see (nothing of it runs)."""
        return self.phase == "failed"


class Mode(StrEnum):
    """How a tunnel runs, as its record names it."""

    ALONE = "alone"  # restart = "no": the client only, nothing restarts it
    ENGINE = "engine"  # supervised by the engine of the state dir (runtime/engine/daemon.py)
    PROCESS = "process"  # supervised by a process of its own (Python API, lone master)


def mode_of(record: TunnelRecord) -> Mode:
    """The record's mode; for a record written before modes were recorded, inferred."""
    if record.mode in {m.value for m in Mode}:
        return Mode(record.mode)
    if record.supervisor_pid is None:
        return Mode.ALONE
    return Mode.ENGINE if is_engine(record.supervisor_argv) else Mode.PROCESS


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def expected_forwards(profile: Profile, facts: HostFacts) -> tuple[ExpectedForward, ...]:
    """The forwards the tunnel of ``profile`` must provide on this host, expanded."""
    return tuple(ExpectedForward.from_forward(f) for f in expanded_forwards(profile, facts))


def profile_hash(profile: Profile, facts: HostFacts, program: str) -> str:
    """sha256 of the canonical profile mapping, the host's facts and the client program: all
    that the client's command is compiled from, so it changes when a restart would (hooks
    change no client: a reload applies them to the running tunnel)."""
    mapping = profile_to_mapping(profile)
    mapping.pop("hooks", None)
    canonical = json.dumps({"profile": mapping, "facts": asdict(facts),
                            "program": program}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@contextlib.contextmanager
def state_errors(paths: StatePaths) -> Iterator[None]:
    """Turn a failed write in the state dir (read-only, full, not ours) into one clear error."""
    try:
        yield
    except OSError as error:
        if isinstance(error, FileNotFoundError | BlockingIOError | InterruptedError):
            raise
        what = error.strerror or type(error).__name__
        raise StateUnusable(
            f"{paths.root}: the state directory cannot be written: {what}",
            hint=f"free space or make it writable, or set {STATE_DIR_ENV} to another "
                 "directory") from None


#: What a writability probe writes: as much as a large record.
PROBE_BYTES = 8192


def check_writable(paths: StatePaths) -> None:
    """StateUnusable unless records can be written now: checked before anything starts.

    The probe is written, not flushed to disk: a full or read-only file system, or a quota,
    refuses the write itself (space is reserved when it is written), as it would a record's;
    a flush would cost every ``up`` a wait on the disk for nothing more."""
    import tempfile

    with state_errors(paths):
        paths.ensure()
        with tempfile.NamedTemporaryFile(dir=paths.tunnels, prefix=".probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()


def write_record(paths: StatePaths, record: TunnelRecord) -> None:
    """Replace the record atomically. Only a kept failure is flushed to disk: every other
    record describes processes that a power cut ends too, and what such a cut may leave of
    it (the record before, or an empty file: read as none) is judged by the identity of
    processes that no longer run, as stale. A failure must outlive them."""
    data = json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n"
    with state_errors(paths):
        paths.ensure().write(paths.record(record.name), data.encode(),
                             durable=record.kept_failure)


def read_record(paths: StatePaths, name: str) -> TunnelRecord | None:
    """The record of ``name``; None when there is none. A damaged or foreign-version record
    is reported as StateUnusable naming the file, rather than guessed at."""
    path = paths.record(name)
    try:
        raw = paths.read(path)
    except OSError as error:
        raise StateUnusable(f"{path}: cannot be read: {error.strerror}") from None
    if not raw:  # what a power cut may leave of a record not flushed (see write_record)
        return None
    # The same bytes give the same (frozen) record without parsing them again.
    return paths.parsed(path, raw, lambda data: _parsed_record(path, name, data))


def _parsed_record(path: Path, name: str, raw: bytes) -> TunnelRecord:
    try:
        return TunnelRecord.from_json(json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start})"
    except (ValueError, RecursionError) as exc:
        problem = str(exc)
    raise StateUnusable(
        f"{path}: damaged record: {problem}",
        hint=f"'sshwrap down {name}' stops its tunnel and removes the record")


def remove_record(paths: StatePaths, name: str) -> None:
    path = paths.record(name)
    paths.forget(path)
    paths.remove(path)


def recorded_names(paths: StatePaths) -> list[str]:
    """The names of the records in the state dir (one listing, no pattern to compile)."""
    entries = paths.listdir(paths.tunnels)
    return sorted(entry[:-5] for entry in entries if entry.endswith(".json") and entry != ".json")


@contextlib.contextmanager
def name_lock(paths: StatePaths, name: str, timeout: float = 30.0) -> Iterator[None]:
    """Hold the lock of one tunnel name, across processes; StateConflict after ``timeout``."""
    path = paths.lock(name)
    # Threads sharing ``paths`` (the engine's tunnels joining one master) queue on its lock
    # before they try the flock, instead of polling it against each other.
    local = paths.thread_lock(path)
    if not local.acquire(timeout=timeout):
        raise StateConflict(f"{name}: another sshwrap has held the lock for over {timeout:g} s",
                            hint=f"wait for it to finish, or check {path}")
    try:
        with _flock(paths, name, timeout):
            yield
    finally:
        local.release()


@contextlib.contextmanager
def _flock(paths: StatePaths, name: str, timeout: float) -> Iterator[None]:
    with state_errors(paths):
        fd = paths.ensure().open(paths.lock(name), os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateConflict(
                        f"{name}: another sshwrap has held the lock for over {timeout:g} s",
                        hint=f"wait for it to finish, or check {paths.lock(name)}") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def ever_locked(paths: StatePaths, name: str) -> bool:
    """False when no sshwrap ever took the lock of ``name`` (every start takes it first) nor
    wrote its record in this state dir: judged without making anything."""
    if not paths.exists():
        return False
    return os.path.lexists(paths.lock(name)) or os.path.lexists(paths.record(name))


def lock_is_free(paths: StatePaths, name: str) -> bool:
    """True when nobody holds the lock of ``name`` right now (a quick, non-blocking probe)."""
    if paths.existing_folder(paths.locks) is None:
        return True
    return file_lock_is_free(paths.lock(name))


def file_lock_is_free(path: Path) -> bool:
    """True when no process holds an flock on ``path`` right now (non-blocking); its folder
    is judged by the caller (StatePaths), the file here (runtime/system/paths.py)."""
    try:
        fd = open_private(path, os.O_RDONLY)  # flock needs no write access (a read-only dir)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def live_process(record: TunnelRecord) -> psutil.Process | None:
    """The record's process if it is still the one sshwrap started, else None (see
    runtime/system/identity.py: the pid, its create time and its command line must all match)."""
    return identified(record.pid, record.create_time, record.argv)


def live_supervisor(record: TunnelRecord) -> psutil.Process | None:
    """The record's supervisor if it still runs (same pid, create time and command line) and
    still supervises the tunnel: once it has recorded the tunnel ``failed`` it has let go
    (the engine lives on for other tunnels)."""
    if record.supervisor_pid is None or record.phase == "failed":
        return None
    return identified(record.supervisor_pid, record.supervisor_create_time,
                      record.supervisor_argv)
