"""Versioned per-tunnel records, the per-name lock, and pid-reuse-safe liveness checks."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sshwrap.core.model import Forward, Profile, TcpAddress, UnixAddress
from sshwrap.core.parse import profile_to_mapping
from sshwrap.errors import StateConflict
from sshwrap.fsutil import atomic_write
from sshwrap.runtime.paths import StatePaths

if TYPE_CHECKING:
    import psutil

SCHEMA_VERSION = 1

#: psutil derives create_time from boot time and clock ticks; the same process always
#: gives the same value, a reused pid a different one.
CREATE_TIME_TOLERANCE = 0.01


@dataclass(frozen=True)
class ExpectedForward:
    """One compiled (expanded) forward the tunnel must provide: what verification checks."""

    type: str
    listen: str
    to: str | None
    host: str | None = None
    port: int | None = None
    path: str | None = None

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
    #: The key of the shared connection (runtime/shared.py) whose master carries the forwards;
    #: then pid, create_time and argv are the master's, which this tunnel must never stop.
    shared: str | None = None
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
            "next_retry": self.next_retry, "shared": self.shared,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TunnelRecord:
        """Raise ValueError for a record of another schema version or a damaged one."""
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
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"damaged record: {exc}") from None

    def verified_now(self) -> TunnelRecord:
        return replace(self, verified=True, phase="up")

    @property
    def supervised(self) -> bool:
        return self.supervisor_pid is not None


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def profile_hash(profile: Profile, argv: Sequence[str]) -> str:
    """sha256 of the canonical profile mapping and the argv: changes when a restart would."""
    canonical = json.dumps({"profile": profile_to_mapping(profile), "argv": list(argv)},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_record(paths: StatePaths, record: TunnelRecord) -> None:
    paths.ensure()
    data = json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n"
    atomic_write(paths.record(record.name), data.encode(), mode=0o600)


def read_record(paths: StatePaths, name: str) -> TunnelRecord | None:
    """The record of ``name``; None when there is none. A damaged or foreign-version record
    is reported as a StateConflict rather than guessed at."""
    path = paths.record(name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return TunnelRecord.from_json(json.loads(text))
    except (ValueError, json.JSONDecodeError) as exc:
        raise StateConflict(
            f"{path}: {exc}",
            hint=f"remove {path} if no sshwrap of another version uses it") from None


def remove_record(paths: StatePaths, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        paths.record(name).unlink()


def recorded_names(paths: StatePaths) -> list[str]:
    if not paths.tunnels.is_dir():
        return []
    return sorted(p.stem for p in paths.tunnels.glob("*.json"))


@contextlib.contextmanager
def name_lock(paths: StatePaths, name: str, timeout: float = 30.0) -> Iterator[None]:
    """Hold the lock of one tunnel name, across processes; StateConflict after ``timeout``."""
    paths.ensure()
    fd = os.open(paths.lock(name), os.O_RDWR | os.O_CREAT, 0o600)
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


def lock_is_free(paths: StatePaths, name: str) -> bool:
    """True when nobody holds the lock of ``name`` right now (a quick, non-blocking probe)."""
    return file_lock_is_free(paths.lock(name))


def file_lock_is_free(path: os.PathLike[str]) -> bool:
    """True when no process holds an flock on ``path`` right now (non-blocking)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def reap_if_child(pid: int) -> None:
    """Collect the exit status of our own dead child so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def live_process(record: TunnelRecord) -> psutil.Process | None:
    """The record's process if it is still the one sshwrap started, else None.

    Alive means: the pid exists, is not a zombie, and has the recorded create time and
    command line. Anything else is a different (or dead) process and must not be signalled.
    """
    return _identified(record.pid, record.create_time, record.argv)


def live_supervisor(record: TunnelRecord) -> psutil.Process | None:
    """The record's supervisor if it still runs (same pid, create time and command line) and
    still supervises the tunnel: once it has recorded the tunnel ``failed`` it has let go
    (the resident supervisor lives on for other tunnels)."""
    if record.supervisor_pid is None or record.phase == "failed":
        return None
    return _identified(record.supervisor_pid, record.supervisor_create_time,
                       record.supervisor_argv)


def _identified(pid: int, create_time: float, argv: Sequence[str]) -> psutil.Process | None:
    import psutil

    if pid <= 0:  # no process recorded yet
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            reap_if_child(pid)
            return None
        same = abs(proc.create_time() - create_time) <= CREATE_TIME_TOLERANCE \
            and tuple(proc.cmdline()) == tuple(argv)
    except psutil.ZombieProcess:
        reap_if_child(pid)
        return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if same else None
