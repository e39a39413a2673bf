"""The command line's managed tunnels from Python: ``up``, ``status`` and ``down`` hand
profiles to the engine of the state directory with the command line's own requests
(usecases/served.py), and return what ``--json`` prints."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sshwrap.runtime.observe.results import Action, DownReport, StatusReport, UpReport
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT
from sshwrap.store import ProfileStore


def _store(profiles_dir: Sequence[str | os.PathLike[str]] | None) -> ProfileStore:
    """The program's store of these directories (api/program.py)."""
    from sshwrap.api import program

    dirs = [Path(d) for d in profiles_dir] if profiles_dir else None
    return program.stores.get(ProfileStore.from_option(dirs).dirs)


def _raise_failed(report: UpReport | DownReport, check: bool) -> None:
    if not check:
        return
    for outcome in report.outcomes:
        if outcome.action is Action.FAILED and outcome.error is not None:
            raise outcome.error


def up(*names: str, all_profiles: bool = False, tag: str | None = None,
       wait: float = DEFAULT_WAIT, share: bool = False, check: bool = True,
       profiles_dir: Sequence[str | os.PathLike[str]] | None = None) -> UpReport:
    """Start the named profiles in the engine (they outlive this program), verified as
    ``sshwrap up`` verifies them. With ``check`` the first failure is raised; the report
    (``.to_json()`` is ``up --json``) holds every outcome either way."""
    from sshwrap.usecases.served import up_report

    report = up_report(_store(profiles_dir), names, all_profiles=all_profiles, tag=tag,
                       wait=wait, share=share)
    _raise_failed(report, check)
    return report


def status(*names: str,
           profiles_dir: Sequence[str | os.PathLike[str]] | None = None) -> StatusReport:
    """Every profile (or the named ones) with its state and forwards, as ``status --json``."""
    from sshwrap.usecases.served import status_report

    return status_report(_store(profiles_dir), names)


def down(*names: str, all_tunnels: bool = False, check: bool = True) -> DownReport:
    """Stop the named managed tunnels (or all of them); stopping one not running is a no-op."""
    from sshwrap.usecases.served import down_report

    report = down_report(names, all_tunnels=all_tunnels)
    _raise_failed(report, check)
    return report
