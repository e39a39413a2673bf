"""Tunnel state changes as events, and the bus the engine publishes them on."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

#: How many events a slow follower may fall behind before it is dropped (it sees EOF).
BACKLOG = 1000


@dataclass(frozen=True)
class Event:
    """One state change of one tunnel; ``from_state`` is "down" for a tunnel just started."""

    time: float
    name: str
    from_state: str
    to_state: str
    reason: str
    pid: int | None
    restarts: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        pid = data.get("pid")
        return cls(time=float(data["time"]), name=str(data["name"]),
                   from_state=str(data["from_state"]), to_state=str(data["to_state"]),
                   reason=str(data.get("reason") or ""),
                   pid=int(pid) if isinstance(pid, int) and pid > 0 else None,
                   restarts=int(data.get("restarts") or 0))


class EventBus:
    """The engine's side: every subscriber gets every event published after it subscribed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[Event | None]] = []

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for inbox in subscribers:
            try:
                inbox.put_nowait(event)
            except queue.Full:  # a follower that does not read: cut it off, not the engine
                self.unsubscribe(inbox)
                with contextlib.suppress(queue.Full):
                    inbox.get_nowait()
                    inbox.put_nowait(None)

    def subscribe(self) -> queue.Queue[Event | None]:
        inbox: queue.Queue[Event | None] = queue.Queue(maxsize=BACKLOG)
        with self._lock:
            self._subscribers.append(inbox)
        return inbox

    def unsubscribe(self, inbox: queue.Queue[Event | None]) -> None:
        with self._lock:
            if inbox in self._subscribers:
                self._subscribers.remove(inbox)

    def close(self) -> None:
        """The engine exits: every follower is told so (None), and sees the connection end."""
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for inbox in subscribers:
            with contextlib.suppress(queue.Full):
                inbox.put_nowait(None)
