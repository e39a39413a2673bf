"""Compile a Profile to an OpenSSH ``ssh -N`` argv."""

from __future__ import annotations

from sshwrap.core.binds import HostFacts, expanded_forwards
from sshwrap.core.compile import FORWARD_FLAG, forward_spec, strict_host_key_checking
from sshwrap.core.compile.spec import LaunchSpec, launch_options
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


def _launch_args(profile: Profile, spec: LaunchSpec | None) -> list[str]:
    """The master's control socket, the config file (the start's own client config, which
    includes the profile's) and the log."""
    args: list[str] = []
    if spec is not None and spec.control_path is not None:
        args += ["-M", "-S", spec.control_path]
    config = spec.client_config if spec is not None and spec.client_config else \
        profile.ssh_config_file
    if config:
        args += ["-F", config]
    if spec is not None and spec.log_path is not None:
        args += ["-E", spec.log_path]
    if spec is not None and spec.verbose:
        args.append("-v")
    return args


def compile_ssh(
    profile: Profile,
    facts: HostFacts | None = None,
    *,
    program: str = "ssh",
    spec: LaunchSpec | None = None,
) -> list[str]:
    """``ssh -N ... -- HOST`` for the profile; with ``spec``, the whole command a start runs.

    Order is what makes sshwrap's settings win, as ssh keeps the first value of an option:
    sshwrap's own options, then the start's (pinned key, prompts or batch mode), then what
    the profile says, with the profile's ``options`` last before the forwards and ``--``.
    """
    require_parsed(profile, "ssh")
    facts = facts or HostFacts()
    argv = [program] if spec is not None and spec.command else [program, "-N"]
    options = ssh_options(profile) + (launch_options(profile, spec) if spec else [])
    for name, value in options:
        argv += ["-o", f"{name}={value}"]
    argv += _launch_args(profile, spec)
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
    if spec is not None:
        argv += spec.command
    return argv
