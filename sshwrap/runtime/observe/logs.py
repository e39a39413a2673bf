"""A tunnel's client log: its last lines, and following it as it grows."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from sshwrap.errors import InvalidInput, Problem
from sshwrap.runtime.system.paths import StatePaths

DEFAULT_LINES = 50
FOLLOW_INTERVAL = 0.25


def log_path(paths: StatePaths, name: str) -> Path:
    """The log of ``name``; InvalidInput (exit 2) when there is none."""
    path = paths.log(name)
    try:  # judged as every file of the state dir is (its folders too); read again by path
        os.close(paths.open(path, os.O_RDONLY))
    except FileNotFoundError:
        raise InvalidInput(
            Problem(f"no log for tunnel {name!r} at {path}", file=name),
            hint=f"a log appears once the tunnel has been started: sshwrap up {name}") from None
    return path


def _clean(line: str) -> str:
    return line.replace("\r", "")


def tail_lines(path: Path, count: int = DEFAULT_LINES) -> tuple[list[str], int]:
    """The last ``count`` lines of ``path`` (``\\r`` removed) and the offset where it ends."""
    with path.open("rb") as handle:
        last: deque[bytes] = deque(handle, maxlen=max(count, 0)) if count > 0 else deque()
        end = handle.seek(0, os.SEEK_END)
    return [_clean(raw.decode("utf-8", "replace")).rstrip("\n") for raw in last], end


def follow(path: Path, offset: int, *, interval: float = FOLLOW_INTERVAL,
           keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
    """Lines appended to ``path`` after ``offset``, polling; starts over if it is truncated
    or replaced (a restarted tunnel)."""
    partial = b""
    inode = path.stat().st_ino if path.exists() else None
    while keep_going():
        try:
            stat = path.stat()
        except FileNotFoundError:
            time.sleep(interval)
            continue
        if stat.st_ino != inode or stat.st_size < offset:
            inode, offset, partial = stat.st_ino, 0, b""
        if stat.st_size > offset:
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
            *complete, partial = (partial + chunk).split(b"\n")
            for raw in complete:
                yield _clean(raw.decode("utf-8", "replace"))
            continue
        time.sleep(interval)
