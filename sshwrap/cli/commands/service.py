"""The service command: install, uninstall and show a tunnel's systemd user unit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from sshwrap.cli.base import JsonOpt, NameArg, NameOrFileArg, ProfilesOpt, app
from sshwrap.cli.render import emit

service_app = typer.Typer(help="Start tunnels at login under systemd (user units).",
                          no_args_is_help=True)
app.add_typer(service_app, name="service")


if TYPE_CHECKING:
    from sshwrap.usecases.service import ServiceReport


def _show(report: ServiceReport, as_json: bool) -> None:
    if as_json:
        emit(report, as_json=True)
        return
    line = f"{report.unit}: {report.action} ({report.unit_path})"
    if report.active or report.enabled:
        line += f"\n  active: {report.active or '-'}, enabled: {report.enabled or '-'}"
    emit(line)


@service_app.command("install")
def install(name: NameOrFileArg, json_out: JsonOpt = False, profiles: ProfilesOpt = None) -> int:
    """Write ~/.config/systemd/user/sshwrap-NAME.service and enable --now it."""
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.service import install as run_install

    _show(run_install(ProfileStore.from_option(profiles), name), json_out)
    return 0


@service_app.command("uninstall")
def uninstall(name: NameArg, json_out: JsonOpt = False, profiles: ProfilesOpt = None) -> int:
    """Disable --now and remove the unit of NAME."""
    from sshwrap.usecases.service import uninstall as run_uninstall

    _show(run_uninstall(name), json_out)
    return 0


@service_app.command("status")
def status(name: NameArg, json_out: JsonOpt = False, profiles: ProfilesOpt = None) -> int:
    """Whether the unit of NAME is installed, enabled and active."""
    from sshwrap.usecases.service import status as run_status

    report = run_status(name)
    _show(report, json_out)
    return 0 if report.active in ("", "active") else 8
