"""Compile a Profile to an OpenSSH ``ssh -N`` argv."""

from __future__ import annotations

from collections.abc import Sequence

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.compile import FORWARD_FLAG, forward_spec, strict_host_key_checking
from sshwrap.core.model import DEFAULT_ALIVE_COUNT_MAX, Profile


def ssh_options(profile: Profile) -> list[tuple[str, str]]:
    """The ssh options sshwrap always sets, in the order they are passed."""
    options = [("ExitOnForwardFailure", "yes")]
    keepalive = profile.effective_keepalive
    options.append(("ServerAliveInterval", str(keepalive)))
    if keepalive:
        options.append(("ServerAliveCountMax", str(DEFAULT_ALIVE_COUNT_MAX)))
    options.append(("StrictHostKeyChecking", strict_host_key_checking(profile)))
    return options


def compile_ssh(
    profile: Profile,
    facts: HostFacts | None = None,
    *,
    program: str = "ssh",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``ssh -N ... -- HOST`` for the profile; ``extra_args`` (runtime: -E, -v, ...) go last
    before ``--`` so that profile values can never reorder or override them."""
    facts = facts or HostFacts()
    argv = [program, "-N"]
    for name, value in ssh_options(profile):
        argv += ["-o", f"{name}={value}"]
    if profile.ssh_config_file:
        argv += ["-F", profile.ssh_config_file]
    if profile.port is not None:
        argv += ["-p", str(profile.port)]
    if profile.user:
        argv += ["-l", profile.user]
    if profile.identity_file:
        argv += ["-i", profile.identity_file]
    if profile.jump:
        argv += ["-J", ",".join(hop.render() for hop in profile.jump)]
    if profile.compression:
        argv.append("-C")
    for name, value in profile.options:
        argv += ["-o", f"{name}={value}"]
    for forward in expanded_forwards(profile, facts):
        argv += [FORWARD_FLAG[forward.type], forward_spec(forward)]
    argv += list(extra_args)
    argv += ["--", profile.host]
    return argv
