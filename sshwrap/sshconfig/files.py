"""Careful replacement of a user's file: snapshot, backup, refuse if it changed, atomic rename."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sshwrap.errors import InvalidInput, Problem, StateConflict
from sshwrap.fsutil import fsync_dir

BACKUP_SUFFIX = ".sshwrap-backup"


@dataclass(frozen=True)
class Snapshot:
    """A file as read: its resolved path (symlinks followed), bytes and identity."""

    path: Path
    target: Path
    data: bytes
    exists: bool
    identity: tuple[int, int, int, int] | None  # inode, device, size, mtime_ns
    mode: int | None

    @property
    def backup(self) -> Path:
        return self.target.with_name(self.target.name + BACKUP_SUFFIX)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def snapshot(path: Path) -> Snapshot:
    """Read ``path`` (following symlinks) with what identifies this version of it."""
    target = Path(os.path.realpath(path))
    try:
        with target.open("rb") as handle:
            st = os.fstat(handle.fileno())
            data = handle.read()
    except FileNotFoundError:
        return Snapshot(path, target, b"", False, None, None)
    except OSError as exc:
        raise InvalidInput(Problem(f"cannot read: {exc.strerror}", file=str(path))) from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(Problem("is not a regular file", file=str(path)))
    return Snapshot(path, target, data, True, _identity(st), stat.S_IMODE(st.st_mode))


def _unchanged(snap: Snapshot) -> bool:
    fresh = snapshot(snap.path)
    return (fresh.target == snap.target and fresh.exists == snap.exists
            and fresh.data == snap.data and fresh.identity == snap.identity)


def ensure_unchanged(snap: Snapshot) -> None:
    """Raise StateConflict if the file is no longer what ``snap`` read."""
    if not _unchanged(snap):
        raise StateConflict(
            f"{snap.path} changed while sshwrap was preparing its edit; nothing was written",
            hint="run the command again",
        )


def check_writable(snap: Snapshot) -> None:
    """Refuse a file its owner made read-only (root could write it anyway), or one we cannot."""
    if snap.exists and snap.mode is not None and not snap.mode & stat.S_IWUSR:
        raise InvalidInput(
            Problem(f"is read-only (mode {snap.mode:04o}); sshwrap leaves it alone",
                    file=str(snap.path)),
            hint="make it writable (chmod u+w) if sshwrap should change it",
        )
    directory = snap.target.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInput(Problem(f"cannot write in {directory}", file=str(snap.path)))


def _write_temp(directory: Path, name: str, data: bytes, mode: int,
                owner: tuple[int, int] | None) -> str:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".sshwrap-tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        if owner is not None:
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.chown(tmp_name, *owner)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return tmp_name


def replace_checked(snap: Snapshot, data: bytes, *, keep_backup: bool = True) -> None:
    """Replace the file read as ``snap`` with ``data`` atomically.

    Keeps mode and owner (0600 for a new file), writes the link's target when the path is a
    symlink, keeps one backup of the previous content, and raises StateConflict if the file
    changed since ``snap`` was taken (checked right before the rename).
    """
    check_writable(snap)
    target = snap.target
    owner: tuple[int, int] | None = None
    mode = 0o600
    if snap.exists:
        st = target.stat()
        owner, mode = (st.st_uid, st.st_gid), stat.S_IMODE(st.st_mode)
    try:
        tmp_name = _write_temp(target.parent, target.name, data, mode, owner)
    except OSError as exc:
        raise InvalidInput(Problem(f"cannot write: {exc.strerror}", file=str(snap.path))) from None
    try:
        if keep_backup and snap.exists:
            backup_tmp = _write_temp(target.parent, snap.backup.name, snap.data, mode, owner)
            os.replace(backup_tmp, snap.backup)
        ensure_unchanged(snap)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(target.parent)
    _remove_stale_temps(target)


#: A temp file this old was left by a killed sshwrap, not by one still writing.
STALE_SECONDS = 600


def _remove_stale_temps(target: Path) -> None:
    """Delete temp files that a sshwrap killed mid-write (kill -9, power loss) left behind."""
    now = time.time()
    for name in (target.name, target.name + BACKUP_SUFFIX):
        for leftover in target.parent.glob(f".{glob.escape(name)}.*.sshwrap-tmp"):
            with contextlib.suppress(FileNotFoundError):
                if now - leftover.lstat().st_mtime > STALE_SECONDS:
                    leftover.unlink()


def remove_owned(path: Path) -> bool:
    """Delete a file sshwrap owns; True if it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True
