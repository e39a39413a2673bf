"""Careful replacement of a user's file: snapshot, backup, refuse if it changed, atomic rename."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sshwrap.errors import InvalidInput, Problem, StateConflict
from sshwrap.fsutil import NotRegularFile, fsync_dir, read_regular, replace_atomically

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
    try:  # a FIFO is refused before anything waits on it
        data, st = read_regular(target)
    except FileNotFoundError:
        return Snapshot(path, target, b"", False, None, None)
    except NotRegularFile as exc:
        raise InvalidInput(Problem(str(exc.strerror), file=str(path))) from None
    except OSError as exc:
        raise InvalidInput(Problem(f"cannot read: {exc.strerror}", file=str(path))) from None
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
        if keep_backup and snap.exists:
            replace_atomically(snap.backup, snap.data, mode=mode, owner=owner)
        replace_atomically(target, data, mode=mode, owner=owner,
                           before_rename=lambda: ensure_unchanged(snap))
    except OSError as exc:
        raise InvalidInput(Problem(f"cannot write: {exc.strerror}", file=str(snap.path))) from None


def remove_owned(path: Path) -> bool:
    """Delete a file sshwrap owns; True if it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True
