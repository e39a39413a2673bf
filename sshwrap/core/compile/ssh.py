"""Compile a Profile to an OpenSSH ``ssh -N`` argv."""

from __future__ import annotations

from collections.abc import Sequence

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.compile import FORWARD_FLAG, forward_spec, strict_host_key_checking
from sshwrap.core.compile.values import require_parsed
from sshwrap.core.model import DEFAULT_ALIVE_COUNT_MAX, ForwardType, Profile, UnixAddress


def _unix_listener(profile: Profile) -> bool:
    return any(isinstance(f.listen, UnixAddress) and f.type is not ForwardType.REMOTE
               for f in profile.forwards)


def ssh_options(profile: Profile) -> list[tuple[str, str]]:
    """The ssh options sshwrap always sets, in the order they are passed.

    They come first wherever ssh reads them (ssh keeps the first value it sees), so neither
    the profile's ``options`` nor the user's config can override them.
    """
    options = [("ExitOnForwardFailure", "yes")]
    keepalive = profile.effective_keepalive
    options.append(("ServerAliveInterval", str(keepalive)))
    if keepalive:
        options.append(("ServerAliveCountMax", str(DEFAULT_ALIVE_COUNT_MAX)))
    options.append(("StrictHostKeyChecking", strict_host_key_checking(profile)))
    if _unix_listener(profile):
        # ssh must never replace an existing file with its socket; a stale socket of our own
        # is removed by the runtime, which checks that it is one.
        options.append(("StreamLocalBindUnlink", "no"))
    return options


def compile_ssh(
    profile: Profile,
    facts: HostFacts | None = None,
    *,
    program: str = "ssh",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``ssh -N ... -- HOST`` for the profile.

    Order is what makes sshwrap's settings win, as ssh keeps the first value of an option:
    sshwrap's own options, then ``extra_args`` (the runtime's: -E, -v, BatchMode, ...), then
    what the profile says, with the profile's ``options`` last before the forwards and ``--``.
    """
    require_parsed(profile, "ssh")
    facts = facts or HostFacts()
    argv = [program, "-N"]
    for name, value in ssh_options(profile):
        argv += ["-o", f"{name}={value}"]
    argv += list(extra_args)
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
    argv += ["--", profile.host]
    return argv
