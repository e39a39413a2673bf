"""What ``status`` keeps from one run to the next: profiles as compiled, and first hops."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Profile
from sshwrap.runtime.observe.results import ForwardStatus

#: A profile file by its path and its identity (inode, size, times).
FileKey = tuple[str, tuple[int, ...]]
#: How many compiled profiles one memory keeps, for all host facts and state dirs together.
COMPILED_MAX = 4096


class FirstHops:
    """The first-hop socket found for each client, by its pid: trusted while that inode
    lives (a pid reused by another client finds its own, since the old inode is gone)."""

    #: How many clients' first hops are kept.
    MAX = 1 << 12

    def __init__(self) -> None:
        self._known: dict[int, int] = {}
        self._lock = threading.Lock()

    def get(self, pid: int) -> int | None:
        with self._lock:
            return self._known.get(pid)

    def keep(self, pid: int, inode: int) -> None:
        with self._lock:
            if len(self._known) >= self.MAX:
                self._known.clear()
            self._known[pid] = inode


@dataclass(frozen=True)
class Compiled:
    """What a row of ``status`` needs of a profile: the profile, its forwards, the hash of
    what it runs (None where it does not load or compile)."""

    profile: Profile | None
    idle: tuple[ForwardStatus, ...] = ()
    digest: str | None = None


@dataclass
class StatusMemory:
    """Profiles as compiled, by the host's facts, the state dir (its logs' folder) and the
    profile file; and each client's first-hop socket (runtime/observe/livenums.py).

    The engine owns one for its lifetime: a status asked again (or ``--watch``) compiles only
    the profiles that changed and finds each client's first hop once. The command line
    without an engine makes a fresh one per status."""

    hops: FirstHops = field(default_factory=FirstHops)
    _compiled: dict[tuple[HostFacts, str, FileKey], Compiled] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def compiled(self, facts: HostFacts, root: str, key: FileKey) -> Compiled | None:
        """The profile file ``key`` as compiled before for these facts and this state dir."""
        with self._lock:
            return self._compiled.get((facts, root, key))

    def keep(self, facts: HostFacts, root: str, key: FileKey, compiled: Compiled) -> None:
        with self._lock:
            if len(self._compiled) >= COMPILED_MAX:
                self._compiled.clear()
            self._compiled[(facts, root, key)] = compiled
