"""Profile files on disk: where they are searched, loading them, and writing new ones."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sshwrap.core.model import Forward, ForwardType, Profile, UnixAddress
from sshwrap.core.parse import parse_profile
from sshwrap.core.unparse import profile_to_mapping
from sshwrap.errors import InvalidInput, Problem, ProfileNotFound, gathered
from sshwrap.fsutil import NotRegularFile, atomic_write, read_regular
from sshwrap.names import checked_name
from sshwrap.textsafe import shown

SUFFIX = ".toml"
#: A profile is a few hundred bytes; a file far larger is a mistake, and is not parsed.
MAX_PROFILE_BYTES = 1 << 20


def default_profile_dirs(env: dict[str, str] | None = None) -> list[Path]:
    """``SSHWRAP_PROFILES`` (colon-separated) if set, else the user's config dir and ./profiles."""
    env = dict(os.environ) if env is None else env
    if env.get("SSHWRAP_PROFILES"):
        return [Path(p).expanduser() for p in env["SSHWRAP_PROFILES"].split(":") if p]
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [config_home / "sshwrap" / "profiles", Path("profiles")]


#: Profiles a store keeps parsed, at most; then it parses them again.
MAX_KEPT = 4096


@dataclass(frozen=True)
class ProfileStore:
    """The ordered profile directories; the first one holding a name wins.

    A store keeps the last profile loaded from each file with the bytes it came from: the
    engine loads a profile for ``up`` and again for its tunnel, fifty times for fifty
    tunnels; the same bytes give the same (frozen) profile without parsing them again. A
    long-lived process keeps its stores in ProfileStores."""

    dirs: tuple[Path, ...]
    #: (the file as named, its folder) -> (its bytes, the profile parsed from them).
    _kept: dict[tuple[str, str], tuple[bytes, Profile]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_option(cls, profiles_dir: Sequence[Path] | None) -> ProfileStore:
        return cls(tuple(profiles_dir) if profiles_dir else tuple(default_profile_dirs()))

    @property
    def write_dir(self) -> Path:
        return self.dirs[0]

    def paths(self) -> dict[str, Path]:
        """Every profile name found, mapped to its file (earlier directories shadow later)."""
        found: dict[str, Path] = {}
        for directory in self.dirs:
            try:
                with os.scandir(directory) as entries:
                    # Names, not paths, are sorted: a hundred Path comparisons cost status
                    # more than reading the directory.
                    names = sorted(e.name for e in entries if e.name.endswith(SUFFIX))
            except OSError:  # not a directory, or not readable: as if it held nothing
                continue
            for name in names:  # the stem, as Path.stem gives it (".toml" is its own)
                found.setdefault(name[: -len(SUFFIX)] if len(name) > len(SUFFIX) else name,
                                 directory / name)
        return found

    def find(self, name_or_path: str) -> Path:
        """A profile by name, or a path to a .toml file."""
        candidate = Path(name_or_path)
        if name_or_path.endswith(SUFFIX) or os.sep in name_or_path:
            if candidate.is_file():
                return candidate
            if os.path.lexists(candidate):  # a FIFO, device or folder: loading says which
                return candidate
            raise ProfileNotFound(Problem("no such file", file=name_or_path))
        checked_name(name_or_path)
        path = self._named(name_or_path)
        if path is None:
            where = ", ".join(str(d) for d in self.dirs)
            raise ProfileNotFound(
                Problem(f"no profile named {shown(name_or_path)}", file=name_or_path),
                hint=f"profiles are searched in: {where}; see 'sshwrap list'",
            )
        return path

    def _named(self, name: str) -> Path | None:
        """The file of profile ``name``, as ``paths()`` finds it, without listing every
        folder: the first folder holding ``NAME.toml`` wins."""
        for directory in self.dirs:
            candidate = directory / f"{name}{SUFFIX}"
            if os.path.lexists(candidate) and directory.is_dir():
                return candidate
        return None

    def load(self, name_or_path: str) -> Profile:
        return self.load_file(self.find(name_or_path))

    def load_file(self, path: Path) -> Profile:
        """load_profile_file, parsed again only when the file's bytes changed."""
        raw = read_profile_bytes(path)
        key = (str(path), os.path.abspath(path.parent))
        known = self._kept.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        profile = parse_profile_bytes(path, raw)
        if len(self._kept) >= MAX_KEPT:
            self._kept.clear()
        self._kept[key] = (raw, profile)
        return profile

    def load_many(self, names: Iterable[str]) -> list[Profile]:
        """Load several profiles, reporting the problems of all of them at once."""
        profiles: list[Profile] = []
        errors: list[InvalidInput] = []
        for name in names:
            try:
                profiles.append(self.load(name))
            except InvalidInput as exc:
                errors.append(exc)
        if errors:
            raise gathered(errors)
        return profiles

    def load_all(self) -> tuple[list[Profile], list[Problem]]:
        """Every profile that loads, and the problems of those that do not."""
        profiles: list[Profile] = []
        problems: list[Problem] = []
        for path in self.paths().values():
            try:
                profiles.append(self.load_file(path))
            except InvalidInput as exc:
                problems.extend(exc.problems)
        return profiles, problems

    def write(self, profile: Profile, *, force: bool = False) -> Path:
        """Write a new profile into the first directory; never overwrite without ``force``."""
        path = self.write_dir / f"{profile.name}{SUFFIX}"
        existing = self.paths().get(profile.name)
        if existing is not None and not force:
            raise InvalidInput(
                Problem("a profile of this name exists already", file=str(existing)),
                hint="pass --force to replace it",
            )
        atomic_write(path, render_profile(profile).encode(), mode=0o644)
        return path


def render_profile(profile: Profile) -> str:
    import tomli_w  # only commands that write profiles pay for it

    return tomli_w.dumps(profile_to_mapping(profile))


class ProfileStores:
    """The profile stores a long-lived process keeps (the engine; the Python API, for its
    program): one per tuple of directories, the most recently made ones."""

    MOST = 64

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._stores: dict[tuple[Path, ...], ProfileStore] = {}

    def get(self, dirs: Iterable[Path]) -> ProfileStore:
        """The store of ``dirs``, made if there is none yet."""
        key = tuple(dirs)
        with self._lock:
            found = self._stores.get(key)
            if found is None:
                if len(self._stores) >= self.MOST:
                    del self._stores[next(iter(self._stores))]
                found = self._stores[key] = ProfileStore(key)
            return found


def load_profile_file(path: Path) -> Profile:
    """Read and validate one profile file; its name is the file's stem."""
    return parse_profile_bytes(path, read_profile_bytes(path))


def read_profile_bytes(path: Path) -> bytes:
    """The bytes of a profile file (never a FIFO or device, nor one far too large)."""
    try:  # a FIFO or device is refused before anything waits on it
        raw, _ = read_regular(path, MAX_PROFILE_BYTES + 1)
    except NotRegularFile as exc:
        raise InvalidInput(Problem(str(exc.strerror), file=str(path))) from None
    except OSError as exc:
        raise InvalidInput(Problem(f"cannot read: {exc.strerror}", file=str(path))) from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise InvalidInput(Problem(f"is larger than {MAX_PROFILE_BYTES} bytes; "
                                   "a profile is a few lines", file=str(path)))
    return raw


def parse_profile_bytes(path: Path, raw: bytes) -> Profile:
    """The profile the bytes of ``path`` hold, validated; its name is the file's stem."""
    return _anchored(parse_profile(path.stem, parse_toml(raw, str(path)), source=str(path)),
                     path)


def parse_toml(raw: bytes, file: str) -> dict[str, object]:
    """A TOML document; every way it can be malformed is one InvalidInput line."""
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text (byte {exc.start} cannot be decoded)"
    except tomllib.TOMLDecodeError as exc:
        problem = f"not valid TOML: {exc}"
    except RecursionError:
        problem = "not valid TOML: nested too deeply"
    except ValueError:  # an integer with more digits than Python converts
        problem = "not valid TOML: a number has too many digits"
    raise InvalidInput(Problem(problem, file=file))


def _anchored(profile: Profile, path: Path) -> Profile:
    """The profile with relative file paths taken from its own folder: the same file whoever
    starts the tunnel, from any directory (the resident supervisor runs in ``/``).

    That covers the local side's unix sockets (a local or dynamic forward's ``listen``, a
    remote forward's ``to``); the server's side is absolute already (``core.parse``)."""
    from dataclasses import replace

    identity_file = _anchored_path(profile.identity_file, "identity_file", path)
    ssh_config_file = _anchored_path(profile.ssh_config_file, "ssh_config_file", path)
    forwards = tuple(_anchored_forward(fwd, f"forward[{i}]", path)
                     for i, fwd in enumerate(profile.forwards))
    return replace(profile, identity_file=identity_file, ssh_config_file=ssh_config_file,
                   forwards=forwards)


def _anchored_forward(forward: Forward, key: str, path: Path) -> Forward:
    from dataclasses import replace

    listen, to = forward.listen, forward.to
    if isinstance(listen, UnixAddress) and forward.type is not ForwardType.REMOTE:
        listen = UnixAddress(_anchored_path(listen.path, f"{key}.listen", path) or listen.path)
    if isinstance(to, UnixAddress) and forward.type is ForwardType.REMOTE:
        to = UnixAddress(_anchored_path(to.path, f"{key}.to", path) or to.path)
    if (listen, to) == (forward.listen, forward.to):
        return forward
    return replace(forward, listen=listen, to=to)


def _anchored_path(value: str | None, key: str, path: Path) -> str | None:
    from sshwrap.core.syntax import SyntaxProblem, check_path

    if not value or value.startswith(("/", "~")):
        return value
    try:
        # No normpath: '..' after a symlinked folder is not the textual parent.
        return check_path(os.path.join(os.path.abspath(path.parent), value), what=key)
    except SyntaxProblem as error:
        raise InvalidInput(Problem(f"relative path taken from the profile's folder: {error}",
                                   file=str(path), key=key)) from None
