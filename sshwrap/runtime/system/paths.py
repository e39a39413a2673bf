"""Where the runtime keeps its state, and the one gate to it: a folder or file there is used
only when it is this user's, no one else can write it, and it is no symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from sshwrap.errors import StateUnusable
from sshwrap.runtime.system.rendezvous import STATE_DIR_ENV, entry_problem, state_root

__all__ = ["STATE_DIR_ENV", "StatePaths", "default_state_dir", "judge_private_dir",
           "open_private"]

#: Opened without following a symlink, nor waiting on a FIFO's writer, nor leaking into
#: a child process.
_SAFE_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """``SSHWRAP_STATE_DIR`` if set, else ``$XDG_STATE_HOME/sshwrap`` (~/.local/state/sshwrap)."""
    return Path(state_root(os.environ if env is None else env))


def _owner(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _refused(path: Path | str, why: str, info: os.stat_result | None = None) -> StateUnusable:
    """Exit 9 naming the path, what is wrong with it and (when known) its owner and mode."""
    seen = f" (owner {_owner(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o})" \
        if info is not None else ""
    return StateUnusable(
        f"{path}: {why}{seen}; sshwrap keeps its state only where no other user can reach",
        hint=f"use a directory of your own that only you can write (remove this one, or set "
             f"{STATE_DIR_ENV} elsewhere)")


def _problem(info: os.stat_result, *, file: bool) -> str | None:
    """What makes an entry of the state dir unusable (lstat of it); None when it is fine."""
    problem = entry_problem(info, file=file)
    if problem == "belongs to another user":
        return f"{problem}, not to {_owner(os.geteuid())}"
    return problem


def judge_private_dir(path: Path | str, info: os.stat_result) -> None:
    """StateUnusable unless ``path`` (lstat ``info``) is a directory of this user that no one
    else can write."""
    problem = _problem(info, file=False)
    if problem is not None:
        raise _refused(path, problem, info)


def _judge_parents(root: Path) -> None:
    """Every folder above the state dir (its real path), as OpenSSH's StrictModes judges the
    folders above ``~/.ssh``: owned by root or this user, and writable by no one else, unless
    it is sticky like /tmp (then no one else can rename or remove what is ours in it)."""
    folder = os.path.dirname(os.path.realpath(root))
    while True:
        try:
            info = os.stat(folder)
        except OSError as error:
            raise _refused(folder, f"cannot be read: {error.strerror}") from None
        if info.st_uid not in (0, os.geteuid()):
            raise _refused(folder, "a folder above the state directory belongs to another "
                                   "user", info)
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise _refused(folder, "a folder above the state directory can be written by "
                                   "other users", info)
        if folder == os.path.dirname(folder):
            break
        folder = os.path.dirname(folder)


_T = TypeVar("_T")


class _Memory:
    """What one StatePaths learns while it is used, shared by the threads that use it (the
    engine passes its own to every tunnel, master and request it serves)."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        #: Its parent folders were found safe: judged once (only their owners, root or this
        #: user, could change them).
        self.parents_safe = False
        #: The last parse of each file, with the bytes it came from.
        self.parsed: dict[str, tuple[bytes, object]] = {}
        #: A lock per file, for its threads to queue on before they try its flock.
        self.locks: dict[str, threading.Lock] = {}
        #: Its inner state dirs (the masters'), each with its own memory.
        self.inner: dict[str, StatePaths] = {}
        #: The folders on the way from the root to each path asked for, by that path: pathlib
        #: took most of a gated read's time working them out again.
        self.inside: dict[str, tuple[str, ...]] = {}


#: How many parses one StatePaths keeps (a record is a few hundred bytes).
PARSED_MAX = 4096


@dataclass(frozen=True)
class StatePaths:
    """The state directory and the files inside it.

    Every read and write of it goes through the methods below, which judge each folder on
    the way from the root to the file (this user's, writable by no one else, no symlink;
    its parents as in ``_judge_parents``) and open files without following a symlink: a
    folder made by someone else, or a file planted in it, is refused with exit 9 naming it
    and its owner, for root too. Readers never create anything."""

    root: Path
    #: A folder inside another state dir (the masters' ``shared``): never a symlink either.
    inner: bool = False
    _memory: _Memory = field(default_factory=_Memory, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StatePaths:
        return cls(default_state_dir(env))

    @property
    def tunnels(self) -> Path:
        return self.root / "tunnels"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def record(self, name: str) -> Path:
        return self.tunnels / f"{name}.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def lock(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    # -- the gate ------------------------------------------------------------------------

    def _judge_root(self, *, create: bool) -> bool:
        """Judge the state dir itself (following a symlink to it) and its parents; create it
        0700 when ``create``. False when it does not exist (and was not to be created)."""
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            except FileExistsError:
                pass  # a file or a dangling symlink there: judged below
            except PermissionError:
                pass  # a parent we cannot write: judged below, with its owner
        if not self._memory.parents_safe:
            _judge_parents(self.root)
            self._memory.parents_safe = True
        try:
            info = os.lstat(self.root) if self.inner else os.stat(self.root)
        except FileNotFoundError:
            if create:
                raise _refused(self.root, "cannot be created") from None
            return False
        except OSError as error:
            raise _refused(self.root, f"cannot be read: {error.strerror}") from None
        judge_private_dir(self.root, info)
        if create and info.st_mode & 0o077:
            os.chmod(self.root, 0o700)  # logs and records reveal hosts, users and ports
        return True

    def _inside(self, path: Path) -> tuple[str, ...]:
        key = str(path)
        parts = self._memory.inside.get(key)
        if parts is None:
            try:
                parts = Path(path).relative_to(self.root).parts
            except ValueError:
                raise ValueError(f"{path} is not inside the state directory {self.root}") \
                    from None
            with self._memory.guard:
                if len(self._memory.inside) >= PARSED_MAX:
                    self._memory.inside.clear()
                self._memory.inside[key] = parts
        return parts

    def _folder(self, path: Path, *, create: bool) -> bool:
        """Judge (and with ``create`` make, 0700) every folder from the root to ``path``.
        False when one of them does not exist and was not to be created."""
        if not self._judge_root(create=create):
            return False
        folder = str(self.root)
        for part in self._inside(path):
            folder = os.path.join(folder, part)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder, 0o700)
            try:
                info = os.lstat(folder)
            except FileNotFoundError:
                return False
            except OSError as error:
                raise _refused(folder, f"cannot be read: {error.strerror}") from None
            judge_private_dir(folder, info)
            if create and info.st_mode & 0o077:
                os.chmod(folder, 0o700)
        return True

    def folder(self, path: Path) -> Path:
        """``path``, a folder inside the state dir, made if needed; every folder on the way
        judged."""
        self._folder(path, create=True)
        return path

    def existing_folder(self, path: Path) -> Path | None:
        """``path`` judged if it exists, None if it (or the state dir) does not; makes
        nothing."""
        return path if self._folder(path, create=False) else None

    def inner_dir(self, name: str) -> StatePaths:
        """The state dir ``name`` inside this one (the masters' records, logs and locks),
        the same object each time: what it learns is kept."""
        with self._memory.guard:
            found = self._memory.inner.get(name)
            if found is None:
                found = self._memory.inner[name] = StatePaths(self.root / name, inner=True)
            return found

    def parsed(self, path: Path, raw: bytes, parse: Callable[[bytes], _T]) -> _T:
        """``parse(raw)``, the file ``path``'s content, parsed again only when its bytes
        changed: the tunnels of a shared connection read every record again and again."""
        key = str(path)
        known = self._memory.parsed.get(key)
        if known is not None and known[0] == raw:
            return cast(_T, known[1])
        value = parse(raw)
        with self._memory.guard:
            if len(self._memory.parsed) >= PARSED_MAX:
                self._memory.parsed.clear()
            self._memory.parsed[key] = (raw, value)
        return value

    def forget(self, path: Path) -> None:
        """Drop what ``parsed`` kept of ``path`` (it is being removed)."""
        with self._memory.guard:
            self._memory.parsed.pop(str(path), None)

    def thread_lock(self, path: Path) -> threading.Lock:
        """The lock threads using this state dir take before the flock of ``path``: they
        queue on it instead of polling the flock against each other."""
        with self._memory.guard:
            return self._memory.locks.setdefault(str(path), threading.Lock())

    def exists(self) -> bool:
        """True when the state dir exists (judged), False when it does not."""
        return self._judge_root(create=False)

    def ensure(self) -> StatePaths:
        """Make (0700) or judge the state dir and its folders of records, logs and locks."""
        for folder in (self.tunnels, self.logs, self.locks):
            self.folder(folder)
        return self

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        """A descriptor of ``path`` inside the state dir: its folders judged (made when
        ``flags`` has O_CREAT), the file opened as ``open_private`` opens it.
        FileNotFoundError when absent."""
        if not self._folder(path.parent, create=bool(flags & os.O_CREAT)):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        return open_private(path, flags, mode)

    def read(self, path: Path, limit: int = -1) -> bytes | None:
        """The bytes of ``path`` inside the state dir (at most ``limit``); None when absent."""
        try:
            fd = self.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(limit)

    def claim(self, path: Path) -> Path:
        """``path`` for a program that opens it itself (ssh's log, config, known_hosts): its
        folders made and judged, and what is there already judged as a file of ours; a
        file no one else can then change, since no one else can write its folder."""
        self._folder(path.parent, create=True)
        info = _lstat(path)
        if info is not None:
            problem = _problem(info, file=True)
            if problem is not None:
                raise _refused(path, problem, info)
        return path

    def write(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        """Replace ``path`` inside the state dir atomically (0600): a temp file beside it, then
        a rename over it, never through a symlink."""
        from sshwrap.fsutil import replace_atomically

        self.claim(path)
        replace_atomically(path, data, mode=0o600, durable=durable)

    def listdir(self, folder: Path) -> list[str]:
        """The entries of ``folder`` inside the state dir; [] when it does not exist."""
        if not self._folder(folder, create=False):
            return []
        try:
            return os.listdir(folder)
        except OSError as error:
            raise _refused(folder, f"cannot be read: {error.strerror}") from None

    def remove(self, path: Path) -> None:
        """Remove the file ``path`` (a symlink there is removed, never followed)."""
        if self._folder(path.parent, create=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @contextlib.contextmanager
    def opened(self, path: Path, flags: int, mode: int = 0o600) -> Iterator[int]:
        fd = self.open(path, flags, mode)
        try:
            yield fd
        finally:
            os.close(fd)


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open ``path`` (in a folder already judged) without following a symlink or waiting on
    a FIFO, and keep it only if it is a regular file of this user that no one else can
    write; StateUnusable naming it otherwise. FileNotFoundError when absent."""
    try:
        fd = os.open(path, flags | _SAFE_OPEN, mode)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: BSD's word for a symlink
            raise _refused(path, "is a symlink", _lstat(path)) from None
        if error.errno in (errno.ENXIO, errno.ENOTDIR, errno.EISDIR):  # FIFO, socket, folder
            raise _refused(path, "is not a regular file", _lstat(path)) from None
        raise
    try:
        info = os.fstat(fd)
        problem = _problem(info, file=True)
        if problem is not None:
            raise _refused(path, problem, info)
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None
