"""The results of the runtime's use cases, which carry their exit code, and their inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sshwrap.errors import ExitCode, SshwrapError

if TYPE_CHECKING:  # types only: the express lane reads reports without the runtime
    from sshwrap.runtime.observe.verify import ForwardCheck
    from sshwrap.runtime.system.state import ExpectedForward

STOP_TIMEOUT = 5.0
#: Another ``up`` of the same name may hold the lock for its whole --wait; wait a bit longer.
LOCK_GRACE = 30.0
MAX_PARALLEL = 32

#: The most severe failure decides the exit code of a command over several tunnels.
SEVERITY = (
    ExitCode.INTERNAL, ExitCode.BAD_INPUT, ExitCode.MISSING_BINARY, ExitCode.AUTH,
    ExitCode.STATE, ExitCode.CONNECTION, ExitCode.FORWARDING, ExitCode.NOT_READY,
    ExitCode.UNHEALTHY, ExitCode.OK,
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
    #: Connections open through it now, from the kernel's table (runtime/observe/livenums.py);
    #: None where not counted (not running, a unix socket, no table to read).
    open: int | None = None

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

    @classmethod
    def from_wire(cls, row: dict[str, Any], error: dict[str, Any] | None) -> TunnelOutcome:
        """The outcome of a report's wire form: its ``--json`` row and its error as data
        (runtime/system/wire.py), raised again as the very class it was."""
        from sshwrap.runtime.system.wire import error_from_data

        return cls(str(row["name"]), Action(row["action"]), row.get("pid"),
                   tuple(ForwardStatus(**f) for f in row.get("forwards") or ()),
                   str(row.get("message") or ""),
                   error_from_data(error) if error is not None else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "action": self.action.value, "pid": self.pid,
            "forwards": [asdict(f) for f in self.forwards], "message": self.message,
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

    def to_json(self) -> list[dict[str, Any]]:
        return [o.to_json() for o in self.outcomes]

    def to_wire(self) -> dict[str, Any]:
        """As plain JSON values, for the engine's socket and the one renderer
        (cli/render/runtime.py): the ``--json`` rows, each error as data, the exit code;
        ``from_wire`` gives back an equal report."""
        from sshwrap.runtime.system.wire import error_data

        return {"command": self.command, "outcomes": self.to_json(),
                "errors": [None if o.error is None else error_data(o.error)
                           for o in self.outcomes],
                "exit_code": int(self.exit_code)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TunnelsReport:
        return cls(str(data["command"]),
                   tuple(TunnelOutcome.from_wire(row, error)
                         for row, error in zip(data["outcomes"], data["errors"], strict=True)))


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
    shared: bool = False  # on a shared connection: pid is the master's (supervise/shared.py)
    #: Of a failed tunnel (kept until up or down): the exit code up gave or would give, and
    #: when it failed (epoch seconds).
    failure_code: int | None = None
    failed_at: float | None = None
    mode: str = ""  # how it runs (state.Mode), when it has a record
    #: The kernel's smoothed round-trip time of the connection to the first hop and its
    #: variation, in milliseconds (runtime/observe/livenums.py); None where not known.
    rtt_ms: float | None = None
    rtt_var_ms: float | None = None


@dataclass(frozen=True)
class StatusReport:
    tunnels: tuple[TunnelStatus, ...]
    exit_code: ExitCode

    def to_json(self) -> list[dict[str, Any]]:
        # As asdict would give it, without its deep copies (a hundred rows took milliseconds).
        return [{**vars(row), "forwards": [dict(vars(f)) for f in row.forwards]}
                for row in self.tunnels]

    def to_wire(self) -> dict[str, Any]:
        return {"tunnels": self.to_json(), "exit_code": int(self.exit_code)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> StatusReport:
        rows = tuple(TunnelStatus(**{
            **row, "state": TunnelState(row["state"]),
            "forwards": tuple(ForwardStatus(**f) for f in row["forwards"])})
            for row in data["tunnels"])
        return cls(rows, ExitCode(int(data["exit_code"])))


def parallel(items: Sequence[Any], work: Callable[[Any], TunnelOutcome], *,
             limit: int = MAX_PARALLEL) -> list[TunnelOutcome]:
    """``work`` on every item, ``limit`` at a time, the outcomes in the items' order."""
    if len(items) <= 1:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        return list(pool.map(work, items))
