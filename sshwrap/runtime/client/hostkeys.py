"""Host keys: fetch them (ssh-keyscan, or ssh through the jump hosts), fingerprint, trust, pin."""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sshwrap.core.knownhosts import keyscan_command, known_hosts_name
from sshwrap.core.model import Client, Hop, HostKeyMode, Profile
from sshwrap.errors import AuthFailed, ConnectionFailed, InvalidInput, MissingBinary, Problem
from sshwrap.fsutil import atomic_write, check_handed_file
from sshwrap.runtime.system.detach import client_environment
from sshwrap.sshconfig.effective import first, parse_dump

KEYSCAN_TIMEOUT = 5
FETCH_TIMEOUT = 20.0

#: OpenSSH's own words for a changed key; sshwrap repeats them and never replaces the key.
CHANGED_WARNING = (
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
    "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
    "Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n"
    "It is also possible that a host key has just been changed."
)


def fingerprint(key_base64: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a base64 public key blob."""
    try:
        blob = base64.b64decode(key_base64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not a base64 key: {key_base64[:20]}...") from exc
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class HostKey:
    key_type: str
    key: str  # base64 blob

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    def line(self, name: str) -> str:
        return f"{name} {self.key_type} {self.key}"


def parse_key_lines(text: str) -> list[HostKey]:
    """Keys of ``known_hosts``-format lines (``name type base64 [comment]``), comments skipped."""
    keys: list[HostKey] = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#") or fields[0].startswith("@"):
            continue
        if len(fields) >= 3:
            try:
                fingerprint(fields[2])
            except ValueError:
                continue
            keys.append(HostKey(fields[1], fields[2]))
    return keys


def _program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise MissingBinary(f"{name} is not installed",
                            hint="install OpenSSH's client: apt-get install openssh-client")
    return found


@dataclass(frozen=True)
class HopTarget:
    """One host whose key a profile needs: where ssh connects and where it keeps the key."""

    label: str  # "jump host 1 (bastion)" / "tunnel host (db)"
    host: str  # the hostname ssh connects to (after HostName)
    port: int
    alias: str  # the HostKeyAlias ssh uses, or "" when it has none
    known_hosts: Path
    behind: tuple[Hop, ...]  # the jump hosts in front of it
    #: every file of its UserKnownHostsFile list, in order (``known_hosts`` is the first)
    known_hosts_files: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        """The name ssh looks the key up under: a HostKeyAlias as it is (ssh adds no port to
        it), else ``host`` or ``[host]:port``."""
        return self.alias or known_hosts_name(self.host, self.port)

    @property
    def keyscan_hint(self) -> str:
        """A shell line that adds the host's keys under the name ssh looks up."""
        return keyscan_command(self.host, self.port, self.alias, str(self.known_hosts))


def target_of(settings: dict[str, list[str]], host: str, *, label: str = "",
              behind: tuple[Hop, ...] = ()) -> HopTarget:
    """The host ssh really connects to and the known_hosts name and files it uses for it, from
    its ``ssh -G`` settings (HostName, Port, HostKeyAlias, UserKnownHostsFile)."""
    hostname = first(settings, "hostname") or host
    port_text = first(settings, "port") or "22"
    real_port = int(port_text) if port_text.isdigit() else 22
    alias = first(settings, "hostkeyalias") or ""
    files = settings.get("userknownhostsfile") or ["~/.ssh/known_hosts"]
    # ssh -G prints a list of files on one line; ssh checks them all, writes to the first
    listed = tuple(Path(f).expanduser() for value in files for f in value.split())
    listed = listed or (Path("~/.ssh/known_hosts").expanduser(),)
    return HopTarget(label or host, hostname, real_port, alias, listed[0], behind, listed)


def keyscan_hint(settings: dict[str, list[str]], host: str) -> str:
    """The ``ssh-keyscan`` line to suggest for ``host`` given its ``ssh -G`` settings."""
    return target_of(settings, host).keyscan_hint


def effective_settings(profile: Profile, host: str, port: int | None,
                       user: str | None) -> dict[str, list[str]]:
    """``ssh -G`` for one host of the profile, with the profile's config file."""
    from sshwrap.runtime.client.launch import check_profile_files

    check_profile_files(profile)
    argv = [_program("ssh"), "-G"]
    if profile.ssh_config_file:
        argv += ["-F", profile.ssh_config_file]
    if port is not None:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    argv += ["--", host]
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, env=client_environment())
    if done.returncode != 0:
        raise InvalidInput(Problem(f"ssh -G failed: {done.stderr.strip()}", key="host",
                                   file=profile.source or profile.name))
    return parse_dump(done.stdout)


def hop_targets(profile: Profile) -> list[HopTarget]:
    """Every host of the profile in connection order: the jump hosts, then the tunnel host."""
    hosts = [(f"jump host {i} ({hop.render()})", hop.host, hop.port, hop.user)
             for i, hop in enumerate(profile.jump, start=1)]
    hosts.append((f"tunnel host ({profile.host})", profile.host, profile.port, profile.user))
    targets = [target_of(effective_settings(profile, host, port, user), host, label=label,
                         behind=tuple(profile.jump[:index]))
               for index, (label, host, port, user) in enumerate(hosts)]
    for target in targets:  # ssh-keygen reads them, and ssh does
        for known_hosts in target.known_hosts_files or (target.known_hosts,):
            check_handed_file(known_hosts, key="UserKnownHostsFile",
                              file=profile.ssh_config_file or "ssh's config")
    return targets


def keyscan(host: str, port: int, timeout: int = KEYSCAN_TIMEOUT) -> list[HostKey]:
    """The keys a directly reachable host offers (``ssh-keyscan``); [] when it cannot say."""
    done = subprocess.run([_program("ssh-keyscan"), "-T", str(timeout), "-p", str(port),
                           "--", host], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, env=client_environment())
    return parse_key_lines(done.stdout)


def fetch_through_jumps(profile: Profile, target: HopTarget) -> list[HostKey]:
    """The key a host behind jump hosts offers, recorded by ssh itself into a scratch file.

    ssh with ``StrictHostKeyChecking=accept-new`` writes the key it received before it
    authenticates, so authentication may fail: the key is what this wants. The jump hosts
    are checked as always (their keys must be trusted already).
    """
    import tempfile

    from sshwrap.runtime.client.launch import client_config_text

    with tempfile.TemporaryDirectory(prefix="sshwrap-keyfetch-") as scratch:
        scratch_file = Path(scratch) / "known_hosts"
        # The jump hosts get only -F from ssh: strict checking and batch mode go in there.
        hop_config = Path(scratch) / "ssh_config"
        hop_config.write_text(client_config_text(
            profile, [("StrictHostKeyChecking", "yes"), ("BatchMode", "yes")]))
        argv = [_program("ssh"), "-T", "-F", str(hop_config)]
        argv += ["-o", f"UserKnownHostsFile={scratch_file}", "-o", "GlobalKnownHostsFile=/dev/null",
                 "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                 "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=10",
                 "-p", str(target.port), "-J", ",".join(h.render() for h in target.behind),
                 "--", target.host, "true"]
        try:
            subprocess.run(argv, capture_output=True, check=False, stdin=subprocess.DEVNULL,
                           env=client_environment(),
                           timeout=FETCH_TIMEOUT, start_new_session=True)
        except subprocess.TimeoutExpired:
            return []
        return parse_key_lines(scratch_file.read_text()) if scratch_file.exists() else []


def offered_keys(profile: Profile, target: HopTarget) -> list[HostKey]:
    keys = keyscan(target.host, target.port)
    if not keys and target.behind:
        keys = fetch_through_jumps(profile, target)
    if not keys:
        raise ConnectionFailed(
            f"{profile.name}: could not read the host key of the {target.label} "
            f"({target.host} port {target.port})",
            hint="check that the host is reachable; 'sshwrap check' says more")
    return keys


def known_keys(known_hosts: Path, name: str) -> list[HostKey]:
    """The keys ``known_hosts`` holds for ``name`` (hashed entries included, via ssh-keygen)."""
    if not known_hosts.exists():
        return []
    done = subprocess.run([_program("ssh-keygen"), "-F", name, "-f", str(known_hosts)],
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          env=client_environment())
    return parse_key_lines(done.stdout)


def changed_key_error(profile: Profile, target: HopTarget, offered: list[HostKey],
                      known: list[HostKey]) -> AuthFailed:
    now = ", ".join(k.fingerprint for k in offered)
    before = ", ".join(k.fingerprint for k in known)
    return AuthFailed(
        f"{profile.name}: the host key of the {target.label} has CHANGED (it now presents "
        f"{now}; {target.known_hosts} has {before})\n{CHANGED_WARNING}",
        hint="sshwrap never replaces a known key: confirm the new key with the server's "
             f"administrator, then remove the old one yourself: "
             f"ssh-keygen -R '{target.name}' -f {target.known_hosts}")


def append_known_hosts(known_hosts: Path, lines: list[str]) -> None:
    """Add lines to a known_hosts file atomically, keeping every existing byte."""
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = known_hosts.read_bytes() if known_hosts.exists() else b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    mode = known_hosts.stat().st_mode & 0o777 if known_hosts.exists() else 0o600
    atomic_write(known_hosts, existing + "".join(f"{ln}\n" for ln in lines).encode(), mode=mode)


# -- the runtime side ----------------------------------------------------------------------


def putty_dir(state_root: Path) -> Path:
    """plink's PUTTYDIR: its host-key cache and random seed, away from the user's ~/.putty."""
    from sshwrap.runtime.system.paths import StatePaths

    return StatePaths(state_root).folder(state_root / "putty")


def pinned_known_hosts(state_root: Path, name: str) -> Path:
    return state_root / "known_hosts" / name


def pin_host_key(profile: Profile, state_root: Path) -> Path | None:
    """For a pinned ssh profile: write the pinned key to sshwrap's own known_hosts and return
    that file (``LaunchSpec.pinned_known_hosts``, the only one ssh then uses for the tunnel
    host); None for other profiles.

    Raises AuthFailed, naming both fingerprints, when the host offers no key with the pin.
    """
    policy = profile.host_key
    if profile.client is not Client.SSH or policy.mode is not HostKeyMode.PINNED:
        return None
    target = hop_targets(profile)[-1]
    offered = offered_keys(profile, target)
    matching = [k for k in offered if k.fingerprint == policy.fingerprint]
    if not matching:
        seen = ", ".join(k.fingerprint for k in offered)
        raise AuthFailed(
            f"{profile.name}: the {target.label} does not present the pinned key "
            f"{policy.fingerprint}; it presents {seen}",
            hint="someone may be intercepting the connection, or the server's key changed: "
                 "confirm the fingerprint with its administrator before changing host_key")
    from sshwrap.runtime.system.paths import StatePaths

    path = pinned_known_hosts(state_root, profile.name)
    StatePaths(state_root).write(path, "".join(f"{k.line(target.name)}\n"
                                               for k in matching).encode())
    return path


def known_fingerprints(target: HopTarget) -> list[str]:
    """The fingerprints the known_hosts files of ``target`` hold for it, each once."""
    files = target.known_hosts_files or (target.known_hosts,)
    found = [k.fingerprint for path in files for k in known_keys(path, target.name)]
    return list(dict.fromkeys(found))


def hop_host_keys(profile: Profile) -> tuple[tuple[str, ...], ...]:
    """For a plink profile with jump hosts: the fingerprints each jump host's plink accepts
    (``LaunchSpec.hop_host_keys``), the keys the user's known_hosts holds for it.

    plink keeps no known_hosts and, with -batch, refuses a key missing from its cache; each
    jump host's keys are taken from the user's known_hosts (where ``sshwrap trust`` puts
    them) and passed as ``-hostkey`` to that hop's plink inside ``-proxycmd``.
    Raises AuthFailed, naming the hop, when a jump host's key is not known.
    """
    if profile.client is not Client.PLINK or not profile.jump:
        return ()
    fingerprints: list[tuple[str, ...]] = []
    for target in hop_targets(profile)[:-1]:
        known = known_fingerprints(target)
        if not known:
            raise AuthFailed(
                f"{profile.name}: the host key of the {target.label} is not known yet "
                f"(no entry for {target.name} in {target.known_hosts})",
                hint=f"run 'sshwrap trust {profile.name}' to see its fingerprint and trust it, "
                     f"or, once you have compared it: {target.keyscan_hint}")
        fingerprints.append(tuple(known))
    return tuple(fingerprints)
