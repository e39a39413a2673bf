"""Atomic file writes that keep permissions and owner, and never leave a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".sshwrap-tmp"
#: A temp file this old was left by a killed writer, whoever holds its pid now.
STALE_SECONDS = 600
#: ``.NAME.PID-START-TOKEN.sshwrap-tmp``: the writer's pid and the start time of that process
#: (clock ticks since boot, 0 where unknown), so that the next write can tell a dead writer's
#: leftover from a file another process is writing right now.
_TEMP_RE = re.compile(r"(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]{12}")


def _process_start(pid: int) -> int:
    """The start time of process ``pid`` in clock ticks since boot; 0 when unknown, -1 when
    there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5), counted after the command name
    except FileNotFoundError:
        return -1
    except (OSError, IndexError, ValueError):
        return 0


def _writer_alive(pid: int, start: int) -> bool:
    now = _process_start(pid)
    if now == -1:
        return False
    if now and start:
        return now == start  # the pid was reused by another process when they differ
    try:
        os.kill(pid, 0)  # no /proc: alive is all that can be told
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    return True


def _temp_name(name: str) -> str:
    pid = os.getpid()
    return f".{name}.{pid}-{max(_process_start(pid), 0)}-{os.urandom(6).hex()}{TEMP_SUFFIX}"


def write_temp(directory: Path, name: str, data: bytes, mode: int,
               owner: tuple[int, int] | None = None, *, durable: bool = True) -> Path:
    """A new temp file beside ``directory/name`` holding ``data`` (flushed to disk when
    ``durable``), with ``mode`` and, when root writes someone else's file, ``owner``; created
    exclusively and never through a symlink."""
    tmp = directory / _temp_name(name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                with contextlib.suppress(PermissionError):  # only root may give a file away
                    os.fchown(handle.fileno(), *owner)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def remove_stale_temps(directory: Path, name: str) -> list[Path]:
    """Delete the temp files a killed write of ``directory/name`` left (kill -9, power loss):
    only regular files named as this module names them, whose writer is dead, or that are
    older than STALE_SECONDS. The removed paths."""
    removed: list[Path] = []
    now = time.time()
    prefix, suffix = f".{name}.", TEMP_SUFFIX
    # One listing compared as strings: a glob pattern per name costs more than the listing
    # of a state dir's records, where every record write looks.
    for entry in os.listdir(directory):
        if not (entry.startswith(prefix) and entry.endswith(suffix)) \
                or len(entry) < len(prefix) + len(suffix):
            continue
        leftover = directory / entry
        middle = entry[len(prefix):-len(suffix)]
        try:
            st = leftover.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        match = _TEMP_RE.fullmatch(middle)
        dead = match is not None and not _writer_alive(int(match["pid"]), int(match["start"]))
        if dead or now - st.st_mtime > STALE_SECONDS:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed.append(leftover)
    return removed


def replace_atomically(target: Path, data: bytes, *, mode: int,
                       owner: tuple[int, int] | None = None,
                       before_rename: Callable[[], None] | None = None,
                       durable: bool = True) -> None:
    """Replace ``target`` (a resolved path) with ``data``: temp file beside it, fsync, the
    ``before_rename`` check (it raises to cancel), rename, fsync of the folder; then the
    temp files a killed earlier write of ``target`` left are removed. Not ``durable``: the
    same without the two fsyncs (still atomic; a power cut may leave the older file, or an
    empty one where there was none)."""
    tmp = write_temp(target.parent, target.name, data, mode, owner, durable=durable)
    try:
        if before_rename is not None:
            before_rename()
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(target.parent)
    remove_stale_temps(target.parent, target.name)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file in the same folder, fsync, rename).

    An existing file keeps its permission bits and owner; a new one gets ``mode`` (0600 if
    unset). A symlink is followed: its target is replaced, the link stays a link. Not
    ``durable``: no fsync (see replace_atomically), for files whose truth ends with the
    processes they describe.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    if st is not None:
        replace_atomically(target, data, mode=stat.S_IMODE(st.st_mode),
                           owner=(st.st_uid, st.st_gid), durable=durable)
    else:
        replace_atomically(target, data, mode=0o600 if mode is None else mode,
                           durable=durable)


class NotRegularFile(OSError):
    """A path that names a FIFO, a device, a socket or a folder where a file is read."""


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "a special file"


def read_regular(path: Path, limit: int = -1) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``path`` (at most ``limit``; symlinks followed) and its
    fstat. NotRegularFile for anything else, found before a read could wait on it: the
    file is opened O_NONBLOCK (a FIFO's open returns at once) and judged by fstat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:  # a unix socket: it cannot be opened at all
            raise NotRegularFile(errno.EINVAL, "is a socket, not a regular file",
                                 str(path)) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL,
                                 f"is {file_kind(info.st_mode)}, not a regular file", str(path))
        os.set_blocking(fd, True)
        return handle.read(limit), info


def check_handed_file(path: str | os.PathLike[str], *, key: str, file: str) -> None:
    """A file sshwrap names to a program that opens it itself (ssh's ``-F`` and ``-i``, a
    known_hosts file for ssh-keygen): absent (the program says so), a regular file, or
    /dev/null (ssh's word for "none"). Anything else (a FIFO the program would wait on for
    ever, a device, a folder) is InvalidInput naming the file and ``key`` (in ``file``),
    found by ``read_regular`` without waiting."""
    from sshwrap.errors import InvalidInput, Problem

    shown = os.fspath(path)
    try:
        read_regular(Path(os.path.expanduser(shown)), 0)
    except NotRegularFile as exc:
        if os.path.realpath(os.path.expanduser(shown)) == os.devnull:
            return
        raise InvalidInput(Problem(f"{shown} {exc.strerror}", key=key, file=file),
                           hint="name a regular file (ssh and ssh-keygen would wait on "
                                "a FIFO for ever)") from None
    except OSError:  # absent or unreadable: the program reports it in its own words
        return


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
