"""Use cases over ~/.ssh/config: sync profiles in as Host blocks, take them out, import tunnels."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.model import ForwardType, Profile
from sshwrap.errors import InvalidInput, Problem
from sshwrap.sshconfig import edit, owned
from sshwrap.sshconfig.effective import (
    Endpoint,
    first,
    missing_forwards,
    parse_dump,
    seen_forwards,
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


@dataclass(frozen=True)
class Imported:
    name: str
    path: str
    host: str
    forwards: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    host: str
    reason: str


@dataclass(frozen=True)
class ImportResult:
    config: str
    imported: tuple[Imported, ...]
    skipped: tuple[Skipped, ...]
    requested: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """False when a host asked for by name was not imported."""
        return not (self.requested and self.skipped)


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

class _Unsupported(Exception):
    """A Host entry uses something a profile cannot hold; the message says what."""


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "ip6-localhost") or host.startswith("127.")


def _listen_value(endpoint: Endpoint, gateway_ports: bool) -> tuple[object, bool]:
    """A profile ``listen`` value for an ssh -G endpoint, and whether it is public."""
    if endpoint.path is not None:
        return endpoint.path, False
    if endpoint.host is None:
        return (f"*:{endpoint.port}", True) if gateway_ports else (endpoint.port, False)
    if endpoint.host == "*" or not _is_loopback(endpoint.host):
        return endpoint.render(), True
    return endpoint.render(), False


def _forward_items(options: dict[str, list[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    forwards = seen_forwards(options)
    # OpenSSH 9.x also lists a LocalForward to a unix socket as a DynamicForward of the same
    # listen address; that echo is not a forward of its own.
    socket_listens = {f.listen for f in forwards
                      if f.type is ForwardType.LOCAL and f.to is not None and f.to.path}
    gateway_ports = first(options, "gatewayports") == "yes"
    items: list[dict[str, Any]] = []
    notes: list[str] = []
    for forward in forwards:
        if forward.type is ForwardType.DYNAMIC and forward.listen in socket_listens:
            continue
        if forward.type is ForwardType.REMOTE and forward.to is not None \
                and forward.to.host == "socks" and forward.to.port == 0:
            raise _Unsupported("a RemoteForward without a target (remote SOCKS) "
                               "has no profile form")
        listen, public = _listen_value(forward.listen,
                                       gateway_ports and forward.type is not ForwardType.REMOTE)
        item: dict[str, Any] = {"type": forward.type.value, "listen": listen}
        if forward.to is not None:
            item["to"] = forward.to.render()
        if public:
            item["public"] = True
            notes.append(f"{forward.describe()} listens beyond loopback, as in the config")
        items.append(item)
    return items, notes


def profile_mapping(options: dict[str, list[str]], baseline: dict[str, list[str]]
                    ) -> tuple[dict[str, Any], list[str]]:
    """A profile document from an ``ssh -G`` dump; values equal to OpenSSH's own defaults
    (``baseline``: the same host with an empty config) are left out."""
    proxy = first(options, "proxycommand")
    if proxy and proxy != "none":
        raise _Unsupported("uses ProxyCommand, which profiles refuse (use ProxyJump)")
    for key in ("localcommand", "remotecommand"):
        if first(options, key):
            raise _Unsupported(f"uses {key}, which profiles refuse")
    mapping: dict[str, Any] = {"host": first(options, "hostname")}
    user = first(options, "user")
    if user and user != first(baseline, "user"):
        mapping["user"] = user
    port = first(options, "port")
    if port and port != first(baseline, "port"):
        mapping["port"] = int(port)
    default_keys = set(baseline.get("identityfile", []))
    own_keys = [k for k in options.get("identityfile", []) if k not in default_keys]
    if own_keys:
        mapping["identity_file"] = own_keys[0]
    jump = first(options, "proxyjump")
    if jump and jump != "none":
        mapping["jump"] = jump.split(",")
    forwards, notes = _forward_items(options)
    mapping["forward"] = forwards
    if len(own_keys) > 1:
        notes.append(f"only the first of {len(own_keys)} IdentityFile lines is kept")
    return mapping, notes


def _candidates(data: bytes, owned_names: set[str]) -> tuple[list[str], list[Skipped]]:
    aliases: list[str] = []
    skipped: list[Skipped] = []
    for entry in edit.host_entries(data):
        if not entry.forward_keywords:
            continue
        plain = [p for p in entry.patterns if edit.is_plain_alias(p)]
        if not plain:
            skipped.append(Skipped(" ".join(entry.patterns),
                                   f"line {entry.line}: only wildcard or negated patterns"))
            continue
        for alias in plain[1:]:
            skipped.append(Skipped(alias, f"another name of Host {plain[0]} (line {entry.line})"))
        if plain[0] in owned_names:
            skipped.append(Skipped(plain[0], "written by sshwrap config sync"))
        elif plain[0] not in aliases:
            aliases.append(plain[0])
    return aliases, skipped


def import_hosts(store: ProfileStore, hosts: Sequence[str] = (), *,
                 config_file: Path | None = None, force: bool = False) -> ImportResult:
    """Turn Host entries with forwards into profiles, using ``ssh -G`` for effective values."""
    from sshwrap.core.parse import parse_profile

    paths = config_paths(config_file)
    snap = snapshot(paths.config)
    if not snap.exists:
        raise InvalidInput(Problem("no such file", file=str(paths.config)))
    if owned.is_owned(snap.data):
        raise InvalidInput(Problem("is sshwrap's own generated file", file=str(paths.config)))
    owned_names = set(owned.parse_sections(snapshot(paths.owned).data))
    aliases, skipped = _candidates(snap.data, owned_names)
    if hosts:
        wanted = list(dict.fromkeys(hosts))
        skipped = [s for s in skipped if s.host in wanted]
        known = set(aliases) | {s.host for s in skipped}
        skipped += [Skipped(h, "no Host entry with forwards of that name") for h in wanted
                    if h not in known]
        aliases = [a for a in aliases if a in wanted]
    imported: list[Imported] = []
    for alias in aliases:
        result = dump(paths.config, alias)
        if not result.ok:
            skipped.append(Skipped(alias, f"ssh -G failed: {result.stderr}"))
            continue
        baseline = dump(Path(os.devnull), alias)
        try:
            mapping, notes = profile_mapping(parse_dump(result.stdout),
                                             parse_dump(baseline.stdout))
        except _Unsupported as exc:
            skipped.append(Skipped(alias, str(exc)))
            continue
        mapping["description"] = f"imported from ssh config Host {alias}"
        try:
            profile = parse_profile(alias, mapping, source=f"{paths.config} Host {alias}")
            path = store.write(profile, force=force)
        except InvalidInput as exc:
            skipped.append(Skipped(alias, "; ".join(exc.lines())
                                   + (f" ({exc.hint})" if exc.hint else "")))
            continue
        imported.append(Imported(alias, str(path), profile.host,
                                 tuple(f.describe() for f in profile.forwards), tuple(notes)))
    return ImportResult(str(paths.config), tuple(imported), tuple(skipped), tuple(hosts))
