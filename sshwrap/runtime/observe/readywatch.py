"""What one process shares while it verifies and checks tunnels: listener reads and holders."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from sshwrap.runtime.system import listeners
from sshwrap.runtime.system.listeners import Listener, TcpListener

#: Every poll of every tunnel being verified, together: at most one per this many seconds,
#: so that twenty tunnels starting at once leave the CPU to their handshakes. They share one
#: read of the listening table per poll interval, so a poll costs little.
POLL_BUDGET = 0.0005
#: At most this many sockets' holders are remembered; then they are read again.
HOLDERS_MAX = 1 << 16


class ReadyWatch:
    """The engine's (or, without one, the command's or the program's): the tunnels it
    verifies at once share one read of the listening table per poll and pace their polls by
    how many they are; a command checking running tunnels (status, up, down) reads no
    process's descriptors for a listener already found held by it.

    A socket keeps its inode while it lives and the kernel does not give it again meanwhile:
    a listener still there under an inode once found held by a process is that process's
    still."""

    def __init__(self) -> None:
        self._recent: tuple[float, list[TcpListener] | None] | None = None
        self._recent_lock = threading.Lock()
        self._holders: dict[int, int] = {}
        self._holders_lock = threading.Lock()
        self._waiters = 0
        self._waiters_lock = threading.Lock()

    def recent_tcp_listeners(self, max_age: float) -> list[TcpListener] | None:
        """tcp_listeners(proc=False) as any user of this watch read it at most ``max_age``
        seconds ago, else read now."""
        with self._recent_lock:
            now = time.monotonic()
            if self._recent is None or now - self._recent[0] > max_age:
                self._recent = (now, listeners.tcp_listeners(proc=False))
            return self._recent[1]

    def held_before(self, found: Sequence[TcpListener], pid: int) -> bool:
        """True when every one of ``found`` was found held by ``pid`` before (and still
        lives, as ``found`` was just read): they are its own, with no descriptor read."""
        with self._holders_lock:
            return bool(found) and all(self._holders.get(ln.inode) == pid for ln in found)

    def attributed(self, found: Iterable[TcpListener], pid: int) -> list[Listener] | None:
        """listeners.attributed, remembering who holds each: when every one was found held
        by ``pid`` before, its descriptors are not read again."""
        found = list(found)
        if self.held_before(found, pid):
            return [listeners.as_listener(ln, pid) for ln in found]
        own = listeners.socket_inodes(pid)
        if own is None:
            return None
        with self._holders_lock:
            if len(self._holders) >= HOLDERS_MAX:
                self._holders.clear()
            self._holders.update((ln.inode, pid) for ln in found if ln.inode in own)
        return [listeners.as_listener(ln, pid if ln.inode in own else None) for ln in found]

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """While open, one more tunnel is being verified: every poll is paced by it."""
        with self._waiters_lock:
            self._waiters += 1
        try:
            yield
        finally:
            with self._waiters_lock:
                self._waiters -= 1

    def interval(self, poll: float) -> float:
        """How long a verifying tunnel sleeps between polls (at least ``poll``)."""
        return max(poll, self._waiters * POLL_BUDGET)
