"""Import: turn the Host entries of ~/.ssh/config that forward ports into profiles."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sshwrap.core.model import ForwardType
from sshwrap.errors import InvalidInput, Problem
from sshwrap.sshconfig import edit, owned
from sshwrap.sshconfig.effective import Endpoint, first, parse_dump, seen_forwards
from sshwrap.sshconfig.files import snapshot
from sshwrap.sshconfig.openssh import dump
from sshwrap.store import ProfileStore
from sshwrap.usecases.sshconfig import config_paths


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
