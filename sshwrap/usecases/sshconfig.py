"""Use cases over ~/.ssh/config: sync profiles in as Host blocks, and take them out again."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.model import Profile
from sshwrap.errors import InvalidInput, Problem
from sshwrap.sshconfig import edit, owned
from sshwrap.sshconfig.effective import (
    first,
    missing_forwards,
    parse_dump,
)
from sshwrap.sshconfig.files import (
    Snapshot,
    check_writable,
    ensure_unchanged,
    remove_owned,
    replace_checked,
    snapshot,
)
from sshwrap.sshconfig.openssh import dump, login_home
from sshwrap.store import ProfileStore

OWNED_NAME = "sshwrap.conf"


@dataclass(frozen=True)
class ConfigPaths:
    """The user's config, the file sshwrap owns next to it, and how the Include names it."""

    config: Path
    owned: Path
    include: str


@dataclass(frozen=True)
class FileChange:
    path: str
    changed: bool
    diff: str  # unified diff of the change; empty when unchanged


@dataclass(frozen=True)
class SyncResult:
    config: str
    owned: str
    profiles: tuple[str, ...]
    changes: tuple[FileChange, ...]
    dry_run: bool
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.changes)


@dataclass(frozen=True)
class RemoveResult:
    config: str
    owned: str
    config_changed: bool
    owned_removed: bool
    warnings: tuple[str, ...] = ()


def config_paths(config_file: Path | None = None) -> ConfigPaths:
    """``~/.ssh/config`` with ``sshwrap.conf`` beside it, or ``--file PATH`` and its sibling.

    A relative Include resolves against the login user's ``~/.ssh``, so it is used only for
    that config; any other file names its sibling by absolute path.
    """
    if config_file is None:
        config = Path.home() / ".ssh" / "config"
        relative = os.path.realpath(Path.home()) == os.path.realpath(login_home())
    else:
        config = Path(os.path.abspath(config_file.expanduser()))
        relative = False
    if config.name == OWNED_NAME:
        raise InvalidInput(Problem(f"{OWNED_NAME} is the file sshwrap owns, not a user config",
                                   file=str(config)))
    owned_path = config.with_name(OWNED_NAME)
    return ConfigPaths(config, owned_path, OWNED_NAME if relative else str(owned_path))


def _diff(path: Path, old: bytes, new: bytes) -> str:
    name = str(path).encode()
    lines = difflib.diff_bytes(
        difflib.unified_diff, old.splitlines(keepends=True), new.splitlines(keepends=True),
        name + b" (now)", name + b" (after)",
    )
    text = b"".join(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n"
                    for line in lines)
    return text.decode("utf-8", "backslashreplace")


def _change(snap: Snapshot, new: bytes) -> FileChange:
    changed = new != snap.data or not snap.exists
    return FileChange(str(snap.path), changed, _diff(snap.path, snap.data, new) if changed else "")


def _profiles(store: ProfileStore, names: Sequence[str]) -> list[Profile]:
    if names:
        return store.load_many(names)
    profiles, problems = store.load_all()
    if problems:
        raise InvalidInput(problems, hint="fix these profiles or name the ones to sync")
    if not profiles:
        where = ", ".join(str(d) for d in store.dirs)
        raise InvalidInput(f"no profiles to sync (searched {where})")
    return profiles


def compiled_blocks(profiles: Sequence[Profile], facts: HostFacts) -> dict[str, bytes]:
    """The checked Host block of each profile; every profile that cannot be written safely is
    reported at once."""
    from sshwrap.core.compile.config import compile_config

    blocks: dict[str, bytes] = {}
    problems: list[Problem] = []
    for profile in profiles:
        where = profile.source or profile.name
        try:
            blocks[profile.name] = owned.check_block(profile.name,
                                                     compile_config(profile, facts))
        except NotExpressible as exc:
            problems.append(Problem(f"{exc.message} (an ssh_config Host block cannot express it)",
                                    key=exc.key, file=where))
        except owned.UnsafeBlock as exc:
            problems.append(Problem(str(exc), key="name", file=where))
    if problems:
        raise InvalidInput(problems)
    return blocks


def _directive(paths: ConfigPaths, include: str) -> bytes:
    try:
        return edit.include_directive(include)
    except edit.UnsafeIncludePath as exc:
        raise InvalidInput(Problem(str(exc), file=str(paths.config)),
                           hint="use a --file whose folder has a plainer path") from None


def _check_with_openssh(paths: ConfigPaths, config: bytes, owned_data: bytes,
                        profiles: Sequence[Profile], facts: HostFacts) -> list[str]:
    """Run ``ssh -G`` on the candidate files for each profile; raise if OpenSSH rejects them or
    does not show a forward. Returns warnings for settings an earlier line overrides."""
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sshwrap-check-") as tmp:
        tmp_owned = Path(tmp) / OWNED_NAME
        tmp_owned.write_bytes(owned_data)
        os.chmod(tmp_owned, 0o600)
        candidate = Path(tmp) / "config"
        candidate.write_bytes(edit.add_include(config, _directive(paths, str(tmp_owned))))
        os.chmod(candidate, 0o600)
        for profile in profiles:
            result = dump(candidate, profile.name)
            if not result.ok:
                message = (result.stderr or "ssh -G failed").replace(str(candidate),
                                                                      str(paths.config))
                message = message.replace(str(tmp_owned), str(paths.owned))
                raise InvalidInput(
                    Problem(f"OpenSSH rejects the synced config: {message}",
                            file=str(paths.config)),
                    hint="nothing was written; fix the line OpenSSH names",
                )
            options = parse_dump(result.stdout)
            missing = missing_forwards(profile, facts, options)
            if missing:
                raise InvalidInput(
                    Problem(f"'ssh -G {profile.name}' would not show "
                            + ", ".join(f.describe() for f in missing), file=str(paths.config)),
                    hint="nothing was written; an earlier line of the config "
                         "(ClearAllForwardings?) overrides the profile",
                )
            warnings.extend(_overridden(profile, options, paths))
    return warnings


def _overridden(profile: Profile, options: dict[str, list[str]], paths: ConfigPaths) -> list[str]:
    expected = {"hostname": profile.host.lower(), "user": profile.user,
                "port": None if profile.port is None else str(profile.port)}
    out = []
    for key, want in expected.items():
        got = first(options, key)
        if want is not None and got is not None and got.lower() != want.lower():
            out.append(f"{profile.name}: 'ssh {profile.name}' uses {key} {got}, not {want}: "
                       f"a line of {paths.config} before the Include sets it")
    return out


def sync(store: ProfileStore, names: Sequence[str] = (), *, config_file: Path | None = None,
         dry_run: bool = False, facts: HostFacts | None = None) -> SyncResult:
    """Write the profiles' Host blocks into the owned file and make the user's config Include it.

    With names, only their sections are replaced or added; without, the owned file holds
    exactly every profile. Nothing is written when OpenSSH rejects the result, and nothing
    at all when nothing changed.
    """
    from sshwrap.machine import host_facts

    paths = config_paths(config_file)
    profiles = _profiles(store, names)
    facts = facts or host_facts()
    blocks = compiled_blocks(profiles, facts)

    owned_snap = snapshot(paths.owned)
    if owned_snap.exists and not owned.is_owned(owned_snap.data):
        raise InvalidInput(
            Problem("exists and was not written by sshwrap; refusing to overwrite it",
                    file=str(paths.owned)),
            hint="move that file away, or sync into another config with --file",
        )
    sections = owned.parse_sections(owned_snap.data) if names else {}
    sections.update(blocks)
    new_owned = owned.render(sections)

    config_snap = snapshot(paths.config)
    new_config = edit.add_include(config_snap.data, _directive(paths, paths.include))
    warnings = _check_with_openssh(paths, config_snap.data, new_owned, profiles, facts)

    owned_change = _change(owned_snap, new_owned)
    config_change = _change(config_snap, new_config)
    if not dry_run:
        if owned_change.changed or config_change.changed:
            paths.config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for snap, change in ((owned_snap, owned_change), (config_snap, config_change)):
            if change.changed:
                check_writable(snap)
                ensure_unchanged(snap)
        # The owned file first: a crash in between leaves an unused file, never an Include
        # of a file that is missing or stale.
        if owned_change.changed:
            replace_checked(owned_snap, new_owned, keep_backup=False)
        if config_change.changed:
            replace_checked(config_snap, new_config)
    return SyncResult(
        config=str(paths.config), owned=str(paths.owned),
        profiles=tuple(sorted(blocks)), changes=(config_change, owned_change),
        dry_run=dry_run, warnings=tuple(warnings),
    )


def remove(*, config_file: Path | None = None) -> RemoveResult:
    """Take our Include out of the user's config (restoring its bytes) and delete the owned file."""
    paths = config_paths(config_file)
    config_snap = snapshot(paths.config)
    new_config = edit.remove_include(config_snap.data)
    warnings: list[str] = []
    config_changed = new_config != config_snap.data
    if config_changed:
        replace_checked(config_snap, new_config)
    owned_snap = snapshot(paths.owned)
    removed = False
    if owned_snap.exists:
        if owned.is_owned(owned_snap.data):
            removed = remove_owned(paths.owned)
        else:
            warnings.append(f"{paths.owned} was not written by sshwrap; left in place")
    return RemoveResult(str(paths.config), str(paths.owned), config_changed, removed,
                        tuple(warnings))


# --- import -------------------------------------------------------------------------------
