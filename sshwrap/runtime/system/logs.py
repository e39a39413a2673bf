"""A tunnel's client log: bounded in place, read by offset across its cuts, tailed, followed.

A log is written by processes we do not pace (ssh's ``-E`` and plink's stderr append to it
with O_APPEND), so it is never copied through a process. The engine caps it in place on its
timer: the oldest part goes with FALLOC_FL_COLLAPSE_RANGE (ext4, xfs; the file shrinks and
every appending writer goes on at its new end), or, where the filesystem cannot collapse,
with FALLOC_FL_PUNCH_HOLE (tmpfs, btrfs; the space is freed, the file keeps its length).
An offset into a log is *logical*: the bytes ever written before it. The bytes collapsed
away so far are the log's ``base``, kept in its extended attribute ``user.sshwrap.cut``
("BASE PENDING SIZE"; PENDING is non-zero while a cut is under way), so a reader in any
process turns a logical offset into a place in the file, and never reads across a cut.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

from sshwrap.errors import InvalidInput, Problem
from sshwrap.runtime.system.paths import StatePaths

DEFAULT_LINES = 50
FOLLOW_INTERVAL = 0.25
#: A log is kept under about this many bytes; past it, its oldest half goes.
DEFAULT_CAP = 10 << 20
#: The cap in bytes, when set (the engine reads it at its start; tests set a small one).
CAP_ENV = "SSHWRAP_LOG_CAP"
#: A smaller cap would cut less than a filesystem block.
MIN_CAP = 64 << 10
#: How often the engine looks at the size of its logs.
CHECK_INTERVAL = 1.0
CUT_XATTR = "user.sshwrap.cut"
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE, _FALLOC_FL_COLLAPSE_RANGE = 0x01, 0x02, 0x08
#: A reader waits at most this long for a cut under way to end (one engine's few syscalls).
_PENDING_WAIT = 1.0

T = TypeVar("T")


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


def cap_from_env(env: Mapping[str, str]) -> int:
    """The cap ``SSHWRAP_LOG_CAP`` sets (bytes, at least MIN_CAP), else DEFAULT_CAP."""
    raw = env.get(CAP_ENV, "")
    return max(MIN_CAP, int(raw)) if raw.isdigit() else DEFAULT_CAP


# -- the cut state ---------------------------------------------------------------------------


def _cut_state(fd: int) -> tuple[int, int, int]:
    """(base, pending, size before the pending cut) of the open log ``fd``."""
    try:
        raw = os.getxattr(fd, CUT_XATTR)
        base, pending, before = (int(part) for part in raw.split())
    except (OSError, ValueError):
        return 0, 0, 0
    return base, pending, before


def _set_cut_state(fd: int, base: int, pending: int = 0, before: int = 0) -> None:
    os.setxattr(fd, CUT_XATTR, f"{base} {pending} {before}".encode())


def _consistent(fd: int, read: Callable[[int], T]) -> T:
    """``read(base)`` with no cut between the base read and the bytes read (retried)."""
    deadline = time.monotonic() + _PENDING_WAIT
    while True:
        before = _cut_state(fd)
        if before[1] and time.monotonic() < deadline:
            time.sleep(0.002)
            continue
        result = read(before[0])
        if _cut_state(fd) == before or time.monotonic() >= deadline:
            return result


def _data_start(fd: int, offset: int) -> int:
    """The first byte at or after ``offset`` that is not in a punched hole."""
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError:  # no data after it (ENXIO), or no SEEK_DATA: as it is
        return offset


# -- reading by logical offset ---------------------------------------------------------------


class Chunk(NamedTuple):
    """Bytes read from a log, the logical offset after them, whether the log was found
    shorter than the offset asked (truncated or replaced by someone: read it from 0), and
    how many bytes after the offset asked a cut took before they were read."""
    data: bytes
    next: int
    shrunk: bool = False
    lost: int = 0


def _read(fd: int, base: int, start: int,
          end: int | None) -> Chunk:
    size = os.fstat(fd).st_size
    place = start - base
    if place > size:
        return Chunk(b"", start, shrunk=True)
    cut_into = place < 0
    place = max(place, 0)
    found = _data_start(fd, place)
    cut_into = cut_into or found > place
    os.lseek(fd, found, os.SEEK_SET)
    want = -1 if end is None else max(0, end - base - found)
    data = b"" if want == 0 else _read_fd(fd, want)
    after = base + found + len(data)
    if not cut_into:
        return Chunk(data, after)
    newline = data.find(b"\n")  # the line the cut went through is not told half
    kept = data[newline + 1:] if newline >= 0 else b""
    return Chunk(kept, after, lost=after - len(kept) - start)


def _read_fd(fd: int, want: int) -> bytes:
    parts: list[bytes] = []
    while want != 0:
        part = os.read(fd, 1 << 20 if want < 0 else min(want, 1 << 20))
        if not part:
            break
        parts.append(part)
        want -= len(part) if want > 0 else 0
    return b"".join(parts)


def read_since(path: Path, start: int, end: int | None = None) -> Chunk:
    """The bytes of ``path`` from logical offset ``start`` (to ``end``, if given). What a cut
    took is gone: reading starts at the first whole line kept."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return Chunk(b"", start)
    try:
        return _consistent(fd, lambda base: _read(fd, base, start, end))
    except OSError:
        return Chunk(b"", start)
    finally:
        os.close(fd)


def read_text(path: Path, start: int, end: int | None = None) -> str:
    """``read_since`` decoded, as the diagnosis reads a log (``\\r`` kept)."""
    return read_since(path, start, end).data.decode("utf-8", "replace")


def end_offset(path: Path) -> int:
    """The logical offset where ``path`` ends now (0 when there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return _consistent(fd, lambda base: base + os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _clean(line: str) -> str:
    return line.replace("\r", "")


def tail_lines(path: Path, count: int = DEFAULT_LINES) -> tuple[list[str], int]:
    """The last ``count`` lines of ``path`` (``\\r`` removed) and the logical offset where
    it ends."""
    chunk = read_since(path, 0)
    lines = chunk.data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    last: deque[bytes] = deque(lines, maxlen=max(count, 0)) if count > 0 else deque()
    return [_clean(raw.decode("utf-8", "replace")) for raw in last], chunk.next


def follow(path: Path, offset: int, *, interval: float = FOLLOW_INTERVAL,
           keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
    """Lines appended to ``path`` after logical ``offset``, polling, each once across the
    engine's cuts; starts over if the log is truncated or replaced by someone else."""
    partial = b""
    inode = path.stat().st_ino if path.exists() else None
    while keep_going():
        try:
            inode_now = path.stat().st_ino
        except FileNotFoundError:
            time.sleep(interval)
            continue
        if inode_now != inode:
            inode, offset, partial = inode_now, 0, b""
        chunk = read_since(path, offset)
        if chunk.shrunk:
            offset, partial = 0, b""
            continue
        if chunk.next > offset:
            offset = chunk.next
            if chunk.lost:  # it fell behind by more than the log keeps: said, not hidden
                yield f"--- sshwrap logs: {chunk.lost} bytes were cut from the log (its cap) " \
                      "before they could be shown"
                partial = b""
            *complete, partial = (partial + chunk.data).split(b"\n")
            for raw in complete:
                yield _clean(raw.decode("utf-8", "replace"))
            continue
        time.sleep(interval)


# -- the cap ---------------------------------------------------------------------------------


@functools.cache
def _libc_fallocate() -> Callable[..., int]:
    call = ctypes.CDLL(None, use_errno=True).fallocate
    call.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    return call


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc_fallocate()(fd, mode, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def cap_log(path: Path, cap: int) -> int:
    """Drop the oldest part of ``path`` if it holds more than ``cap`` bytes, keeping the
    newest half of the cap; the bytes dropped (0: nothing to do). OSError when this
    filesystem can do neither cut. Only the engine cuts, one cut at a time."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0  # gone, or not ours to cut
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size <= cap:
            return 0
        base, pending, before = _cut_state(fd)
        if pending:  # an engine died inside a cut: the file tells whether it collapsed
            base = base + pending if info.st_size < before else base
            _set_cut_state(fd, base)
        start = _data_start(fd, 0)
        if info.st_size - start <= cap:
            return 0
        block = info.st_blksize or 4096
        cut = (info.st_size - cap // 2) // block * block
        if cut <= start:
            return 0
        try:
            _set_cut_state(fd, base, cut, info.st_size)
            _fallocate(fd, _FALLOC_FL_COLLAPSE_RANGE, 0, cut)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
                raise
            with contextlib.suppress(OSError):
                _set_cut_state(fd, base)
            _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, 0, cut)
            return cut - start
        _set_cut_state(fd, base + cut)
        return cut
    finally:
        os.close(fd)


def cap_logs(paths: Iterable[Path], cap: int, say: Callable[[str], None],
             told: set[Path]) -> None:
    """Cap every log of ``paths`` (the engine's timer); a cut is told in the log itself, a
    log that cannot be cut is told to ``say`` once (``told`` remembers it)."""
    for path in paths:
        try:
            dropped = cap_log(path, cap)
        except OSError as error:
            if path not in told:
                told.add(path)
                say(f"{path}: cannot be kept under {cap} bytes: {error.strerror}")
            continue
        if dropped:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as log:
                log.write(f"--- sshwrap log {stamp}: over its cap of {cap} bytes: its "
                          f"oldest {dropped} bytes were dropped\n")


class LogKeeper:
    """The engine's timer over its logs: every ``CHECK_INTERVAL``, each one under ``cap``."""

    def __init__(self, files: Callable[[], list[Path]], cap: int,
                 say: Callable[[str], None]) -> None:
        self.files, self.cap, self.say = files, cap, say
        self.told: set[Path] = set()
        self.next = 0.0

    def tick(self) -> None:
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + CHECK_INTERVAL
            cap_logs(self.files(), self.cap, self.say, self.told)


def logs_in(*folders: Path) -> list[Path]:
    """The ``*.log`` files of ``folders``."""
    found: list[Path] = []
    for folder in folders:
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            found += [Path(e.path) for e in entries if e.name.endswith(".log")]
    return found
