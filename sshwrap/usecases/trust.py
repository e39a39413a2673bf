"""``sshwrap trust NAME``: show the host keys of every hop and add them to known_hosts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from sshwrap.core.model import Client
from sshwrap.runtime.client import hostkeys
from sshwrap.store import ProfileStore


class KeyStatus(StrEnum):
    TRUSTED = "already-trusted"
    ADDED = "added"
    DECLINED = "declined"
    PIN = "pin-it"  # plink: it keeps no known_hosts; the profile pins the fingerprint


@dataclass(frozen=True)
class HopKeys:
    """The keys one hop offers, where ssh keeps them, and what ``trust`` did with them."""

    label: str
    host: str
    port: int
    known_hosts: str
    keys: tuple[tuple[str, str], ...]  # (type, SHA256 fingerprint)
    status: KeyStatus | None = None
    #: the name ssh looks the key up under (its HostKeyAlias, or ``[host]:port``)
    known_as: str = ""


@dataclass(frozen=True)
class TrustReport:
    profile: str
    hops: tuple[HopKeys, ...]


Confirm = Callable[[HopKeys], bool]


def trust(store: ProfileStore, name: str, *, confirm: Confirm) -> TrustReport:
    """Fetch each hop's host key in connection order and, if ``confirm`` says so, trust it.

    A hop whose known key differs from the offered one raises AuthFailed with OpenSSH's
    warning: a changed key is never replaced. Hops are handled in order because a host
    behind a jump host can only be reached once the jump host's key is trusted.
    """
    profile = store.load(name)
    done: list[HopKeys] = []
    targets = hostkeys.hop_targets(profile)
    for target in targets:
        offered = hostkeys.offered_keys(profile, target)
        hop = HopKeys(target.label, target.host, target.port, str(target.known_hosts),
                      tuple((k.key_type, k.fingerprint) for k in offered), known_as=target.name)
        # plink's jump hosts are pinned at start from known_hosts (hostkeys.hop_host_keys)
        if profile.client is Client.PLINK and target is targets[-1]:
            done.append(_with(hop, KeyStatus.PIN))
            continue
        known = hostkeys.known_keys(target.known_hosts, target.name)
        if known:
            known_prints = {k.fingerprint for k in known}
            if not any(k.fingerprint in known_prints for k in offered):
                raise hostkeys.changed_key_error(profile, target, offered, known)
            done.append(_with(hop, KeyStatus.TRUSTED))
            continue
        if not confirm(hop):
            done.append(_with(hop, KeyStatus.DECLINED))
            break
        hostkeys.append_known_hosts(target.known_hosts, [k.line(target.name) for k in offered])
        done.append(_with(hop, KeyStatus.ADDED))
    return TrustReport(profile.name, tuple(done))


def _with(hop: HopKeys, status: KeyStatus) -> HopKeys:
    return replace(hop, status=status)
