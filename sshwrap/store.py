"""Profile files on disk: where they are searched, loading them, and writing new ones."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sshwrap.core.model import Profile
from sshwrap.core.parse import parse_profile, profile_to_mapping
from sshwrap.errors import InvalidInput, Problem, ProfileNotFound
from sshwrap.fsutil import atomic_write

SUFFIX = ".toml"


def default_profile_dirs(env: dict[str, str] | None = None) -> list[Path]:
    """``SSHWRAP_PROFILES`` (colon-separated) if set, else the user's config dir and ./profiles."""
    env = dict(os.environ) if env is None else env
    if env.get("SSHWRAP_PROFILES"):
        return [Path(p).expanduser() for p in env["SSHWRAP_PROFILES"].split(":") if p]
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [config_home / "sshwrap" / "profiles", Path("profiles")]


@dataclass(frozen=True)
class ProfileStore:
    """The ordered profile directories; the first one holding a name wins."""

    dirs: tuple[Path, ...]

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
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob(f"*{SUFFIX}")):
                found.setdefault(path.stem, path)
        return found

    def find(self, name_or_path: str) -> Path:
        """A profile by name, or a path to a .toml file."""
        candidate = Path(name_or_path)
        if name_or_path.endswith(SUFFIX) or os.sep in name_or_path:
            if candidate.is_file():
                return candidate
            raise ProfileNotFound(Problem("no such file", file=name_or_path))
        path = self.paths().get(name_or_path)
        if path is None:
            where = ", ".join(str(d) for d in self.dirs)
            raise ProfileNotFound(
                Problem(f"no profile named {name_or_path!r}", file=name_or_path),
                hint=f"profiles are searched in: {where}; see 'sshwrap list'",
            )
        return path

    def load(self, name_or_path: str) -> Profile:
        return load_profile_file(self.find(name_or_path))

    def load_many(self, names: Iterable[str]) -> list[Profile]:
        """Load several profiles, reporting the problems of all of them at once."""
        profiles: list[Profile] = []
        problems: list[Problem] = []
        for name in names:
            try:
                profiles.append(self.load(name))
            except InvalidInput as exc:
                problems.extend(exc.problems)
        if problems:
            raise InvalidInput(problems)
        return profiles

    def load_all(self) -> tuple[list[Profile], list[Problem]]:
        """Every profile that loads, and the problems of those that do not."""
        profiles: list[Profile] = []
        problems: list[Problem] = []
        for path in self.paths().values():
            try:
                profiles.append(load_profile_file(path))
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


def load_profile_file(path: Path) -> Profile:
    """Read and validate one profile file; its name is the file's stem."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(Problem(f"not valid TOML: {exc}", file=str(path))) from None
    except OSError as exc:
        raise InvalidInput(Problem(f"cannot read: {exc.strerror}", file=str(path))) from None
    return _anchored(parse_profile(path.stem, data, source=str(path)), path)


def _anchored(profile: Profile, path: Path) -> Profile:
    """The profile with relative file paths taken from its own folder: the same file whoever
    starts the tunnel, from any directory (the resident supervisor runs in ``/``)."""
    from dataclasses import replace

    identity_file = _anchored_path(profile.identity_file, "identity_file", path)
    ssh_config_file = _anchored_path(profile.ssh_config_file, "ssh_config_file", path)
    if (identity_file, ssh_config_file) == (profile.identity_file, profile.ssh_config_file):
        return profile
    return replace(profile, identity_file=identity_file, ssh_config_file=ssh_config_file)


def _anchored_path(value: str | None, key: str, path: Path) -> str | None:
    from sshwrap.core.syntax import SyntaxProblem, check_path

    if not value or value.startswith(("/", "~")):
        return value
    try:
        return check_path(os.path.join(os.path.abspath(path.parent), value), what=key)
    except SyntaxProblem as error:
        raise InvalidInput(Problem(f"relative path taken from the profile's folder: {error}",
                                   file=str(path), key=key)) from None
