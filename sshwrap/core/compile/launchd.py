"""Compile a Profile to a launchd LaunchAgent plist running sshwrap's engine in the foreground."""

from __future__ import annotations

import plistlib
from collections.abc import Mapping

from sshwrap.core.model import Client, Profile

#: launchd waits this long between two starts of a job that exited: the engine restarts the
#: client itself, so launchd's own restart is only a backstop (a fatal failure, a crash).
THROTTLE_SECONDS = 5
#: After SIGTERM, launchd sends SIGKILL after this many seconds; the engine needs less.
EXIT_TIMEOUT = 15


def agent_label(profile_name: str) -> str:
    """The job's Label, also the plist's file name without ``.plist``."""
    return f"org.sshwrap.{profile_name}"


def compile_launchd(
    profile: Profile,
    *,
    python: str = "/usr/bin/python3",
    environment: Mapping[str, str] | None = None,
) -> str:
    """A LaunchAgent running ``python -m sshwrap --engine --foreground --up NAME`` at login:
    the engine of the state dir in the foreground, as the systemd unit runs it (see
    compile_systemd: one engine per state dir, its tunnels handed over when one runs).

    KeepAlive restarts it only when it exits unsuccessfully (a tunnel failed for good, a
    crash), so ``launchctl bootout`` (SIGTERM, exit 0) is a normal stop. ``environment``
    carries the profile directories and the state directory, as for the systemd unit. Words
    go into an argv array, never through a shell.
    """
    from sshwrap.core.compile import NotExpressible
    from sshwrap.core.compile.systemd import engine_argv
    from sshwrap.core.compile.values import require_parsed

    require_parsed(profile, "launchd")
    if profile.client is Client.PLINK:
        raise NotExpressible("launchd", "client", "the agent runs OpenSSH; use client = \"ssh\"")
    job: dict[str, object] = {
        "Label": agent_label(profile.name),
        "ProgramArguments": engine_argv(python, profile.name),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_SECONDS,
        "ExitTimeOut": EXIT_TIMEOUT,
    }
    if profile.description:
        job["Comment"] = profile.description
    if environment:
        job["EnvironmentVariables"] = dict(sorted(environment.items()))
    return plistlib.dumps(job, sort_keys=False).decode()
