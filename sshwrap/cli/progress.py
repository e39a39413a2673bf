"""The one-line progress display of ``up`` and ``restart`` on a terminal."""

from __future__ import annotations

import threading
from collections.abc import Callable


class ProgressLine:
    """Redraws ``verifying (R/N ready): name done/total, ...`` in place; thread-safe."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, int]] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        with self._lock:
            if self._seen.get(name) == (done, total):
                return
            self._seen[name] = (done, total)
            ready = sum(d == t for d, t in self._seen.values())
            parts = ", ".join(f"{n} {d}/{t}" for n, (d, t) in sorted(self._seen.items()))
            self._write(f"\r\x1b[Kverifying ({ready}/{len(self._seen)} ready): {parts}")

    def clear(self) -> None:
        """Erase the line, before the report is printed."""
        with self._lock:
            self._write("\r\x1b[K")
