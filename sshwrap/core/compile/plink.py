"""Compile a Profile to a PuTTY ``plink`` argv, refusing what plink cannot express."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from sshwrap.core.binds import HostFacts, expand_forward
from sshwrap.core.compile import FORWARD_FLAG, NotExpressible, forward_spec
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.values import require_parsed
from sshwrap.core.model import Forward, HostKeyMode, Profile, UnixAddress
from sshwrap.core.syntax import FINGERPRINT_RE
from sshwrap.textsafe import shown

TARGET = "plink"


def _refuse(key: str, message: str) -> NotExpressible:
    return NotExpressible(TARGET, key, message)


def _check_expressible(profile: Profile) -> None:
    if profile.ssh_config_file:
        raise _refuse("ssh_config_file", "plink reads no OpenSSH config file")
    if profile.options:
        name = profile.options[0][0]
        raise _refuse(f"options.{name}", "plink takes no OpenSSH options")
    if profile.keepalive:
        raise _refuse("keepalive", "plink has no command-line keep-alive setting; "
                      "sshwrap's own checks notice a dead plink")
    if profile.host_key.mode is HostKeyMode.ACCEPT_NEW:
        raise _refuse("host_key", "plink in batch mode cannot trust a new key on first use; "
                      "pin the key's SHA256 fingerprint instead")
    if profile.identity_file and not profile.identity_file.endswith(".ppk"):
        raise _refuse(
            "identity_file",
            f"plink needs a PuTTY .ppk key; convert it with: "
            f"puttygen {profile.identity_file} -O private -o {profile.identity_file}.ppk",
        )
    if profile.share_connection:
        raise _refuse("share_connection", "plink does not share OpenSSH control connections")
    for i, forward in enumerate(profile.forwards):
        if isinstance(forward.listen, UnixAddress) or isinstance(forward.to, UnixAddress):
            raise _refuse(f"forward[{i}]", "plink forwards only TCP ports, not unix sockets")


def plink_forwards(profile: Profile, facts: HostFacts) -> tuple[Forward, ...]:
    """The forwards with explicit listen addresses, one per forward.

    plink (0.78, checked against a real sshd) opens a loopback listen as one listener on
    127.0.0.1 *and* [::1], and fails that forward if either family is taken. So one explicit
    ``127.0.0.1:PORT`` already covers both families; a second ``[::1]:PORT`` flag, as OpenSSH
    needs, would only collide with plink's own listener and log a spurious failure.
    """
    forwards: list[Forward] = []
    for forward in profile.forwards:
        expanded = expand_forward(forward, facts)
        forwards.append(expanded[0])
    return tuple(forwards)


def _identity_args(profile: Profile) -> list[str]:
    return ["-i", profile.identity_file] if profile.identity_file else []


def _proxy_command(profile: Profile, program: str,
                   hop_host_keys: Sequence[Sequence[str]] = ()) -> str | None:
    """A ``-proxycmd`` chain through the jump hosts, innermost hop first.

    Every hop gets explicit host and port values instead of %host/%port tokens, so no
    level of nesting needs %-escaping; values are already free of shell metacharacters
    and shlex.quote handles the nesting. ``hop_host_keys[i]`` are the ``SHA256:``
    fingerprints the plink of jump host i accepts (``-hostkey``; plink keeps no known_hosts).
    """
    if not profile.jump:
        return None
    proxy: str | None = None
    hops = list(profile.jump)
    destinations = [(hop.host, hop.port or 22) for hop in hops[1:]]
    destinations.append((profile.host, profile.port or 22))
    for index, (hop, (dest_host, dest_port)) in enumerate(
            zip(hops, destinations, strict=True)):
        inner = [program, "-ssh", "-batch"]
        for key in hop_host_keys[index] if index < len(hop_host_keys) else ():
            if not FINGERPRINT_RE.fullmatch(key):
                raise _refuse("jump", f"{shown(key)} is not a SHA256 host-key fingerprint")
            inner += ["-hostkey", key]
        if hop.port is not None:
            inner += ["-P", str(hop.port)]
        if hop.user:
            inner += ["-l", hop.user]
        inner += _identity_args(profile)
        if proxy is not None:
            inner += ["-proxycmd", proxy]
        dest = f"[{dest_host}]" if ":" in dest_host else dest_host
        inner += ["-nc", f"{dest}:{dest_port}", hop.host]
        proxy = shlex.join(inner)
    return proxy


def proxy_command(profile: Profile, program: str,
                  hop_host_keys: Sequence[Sequence[str]] = ()) -> str | None:
    """The ``-proxycmd`` value through the profile's jump hosts, None without any."""
    return _proxy_command(profile, program, hop_host_keys)


def compile_plink(
    profile: Profile,
    facts: HostFacts | None = None,
    *,
    program: str = "plink",
    spec: LaunchSpec | None = None,
) -> list[str]:
    """``plink -ssh -N -batch ... HOST``; raises NotExpressible for what plink lacks. With
    ``spec``, the whole command a start runs (its jump hosts' keys, its password pipe).

    A password never goes in argv: ``spec.password_file`` names the pipe plink reads it from.
    """
    require_parsed(profile, "plink")
    facts = facts or HostFacts()
    _check_expressible(profile)
    argv = [program, "-ssh"] if spec is not None and spec.command else [program, "-ssh", "-N"]
    argv.append("-batch")
    if profile.port is not None:
        argv += ["-P", str(profile.port)]
    if profile.user:
        argv += ["-l", profile.user]
    argv += _identity_args(profile)
    if profile.compression:
        argv.append("-C")
    if profile.host_key.mode is HostKeyMode.PINNED and profile.host_key.fingerprint:
        argv += ["-hostkey", profile.host_key.fingerprint]
    proxy = _proxy_command(profile, program, spec.hop_host_keys if spec is not None else ())
    if proxy is not None:
        argv += ["-proxycmd", proxy]
    for forward in plink_forwards(profile, facts):
        argv += [FORWARD_FLAG[forward.type], forward_spec(forward)]
    if spec is not None and spec.verbose:
        argv.append("-v")
    if spec is not None and spec.password_file is not None:
        argv += ["-pwfile", spec.password_file]
    argv.append(profile.host)
    if spec is not None:
        argv += spec.command
    return argv
