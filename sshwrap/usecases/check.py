"""``check NAME``: walk a tunnel's path (client, gateway, server side) and judge it as it is now."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sshwrap.core.model import Client, Profile
from sshwrap.errors import InvalidInput
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.store import ProfileStore
from sshwrap.usecases.check_steps import (
    GATEWAY,
    CheckReport,
    CheckStep,
    failed,
    passed,
    skipped,
)

if TYPE_CHECKING:
    from sshwrap.runtime.client.auth import AskSecret
    from sshwrap.runtime.client.questions import AskQuestion


def _secret_step(profile: Profile, ask: AskSecret | None,
                 environ: Mapping[str, str] | None) -> tuple[CheckStep | None, str | None]:
    """The password or passphrase ``up`` would use; a failed step when there is none."""
    from sshwrap.runtime.client.auth import secret_for

    try:
        return None, secret_for(profile, ask, environ)
    except InvalidInput as exc:
        return failed("authenticate", "; ".join(exc.lines()), exc.hint, GATEWAY), None


def run_check(store: ProfileStore, name: str, paths: StatePaths | None = None,
              on_step: Callable[[CheckStep], None] | None = None, *,
              ask_secret: AskSecret | None = None,
              environ: Mapping[str, str] | None = None,
              ask_question: AskQuestion | None = None) -> CheckReport:
    """Every step, in path order; a failing step makes the steps that need it skip.

    An unknown or unreadable profile raises InvalidInput (bad input, exit 2): there is no
    path to walk. ``ask_secret`` and ``environ`` give the password as ``up`` gets it;
    ``ask_question`` answers the server's questions (a one-time code) as ``up``'s terminal.
    """
    from sshwrap.usecases.check_gateway import auth_step, hop_steps
    from sshwrap.usecases.check_tunnel import tunnel_steps

    paths = paths or StatePaths.from_env()
    steps: list[CheckStep] = []

    def add(*new: CheckStep) -> None:
        for step in new:
            steps.append(step)
            if on_step is not None:
                on_step(step)

    profile = store.load(name)
    program = shutil.which(profile.client.value)
    if program is None:
        add(failed(f"{profile.client.value} installed", "not found on PATH",
                   "apt-get install " + ("putty-tools" if profile.client is Client.PLINK
                                         else "openssh-client")))
    else:
        add(passed(f"{profile.client.value} installed", program))
    from sshwrap.usecases.profiles import compile_problems

    problems = compile_problems(profile)
    if problems:
        add(failed("profile valid", "; ".join(problems), "sshwrap validate " + name))
    else:
        add(passed("profile valid", profile.source or name))
    if program is None or problems:
        add(skipped("connect and authenticate", "needs the client and a valid profile",
                    GATEWAY))
        return CheckReport(profile.name, tuple(steps))
    found, reachable = hop_steps(profile, program)
    add(*found)
    missing, secret = _secret_step(profile, ask_secret, environ)
    if missing is not None:
        add(missing)
    elif reachable:
        add(auth_step(profile, secret, paths, ask=ask_question))
    else:
        add(skipped("authenticate", "the first hop is not reachable", GATEWAY))
    add(*tunnel_steps(profile, paths))
    return CheckReport(profile.name, tuple(steps))
