"""Commands over ~/.ssh/config: config sync, config remove, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sshwrap.cli.base import JsonOpt, NamesOrFilesArg, ProfilesOpt, app
from sshwrap.cli.render import emit
from sshwrap.errors import ExitCode

config_app = typer.Typer(
    name="config",
    help="Keep profiles as Host aliases in ~/.ssh/config (through one Include line).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(config_app, name="config")

FileOpt = Annotated[
    Path | None,
    typer.Option("--file", metavar="PATH",
                 help="The ssh config to edit or read instead of ~/.ssh/config."),
]


@config_app.command("sync")
def sync_cmd(
    names: NamesOrFilesArg = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print a diff of what would change; change nothing.")
    ] = False,
    config_file: FileOpt = None,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Write the profiles' Host blocks to sshwrap.conf and Include it from the ssh config."""
    from sshwrap.cli.render import sshconfig as _render  # noqa: F401
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.sshconfig import sync

    result = sync(ProfileStore.from_option(profiles), names or [], config_file=config_file,
                  dry_run=dry_run)
    emit(result, as_json=json_out)
    return ExitCode.OK


@config_app.command("remove")
def remove_cmd(config_file: FileOpt = None, json_out: JsonOpt = False) -> int:
    """Take sshwrap's Include out of the ssh config and delete sshwrap.conf."""
    from sshwrap.cli.render import sshconfig as _render  # noqa: F401
    from sshwrap.usecases.sshconfig import remove

    emit(remove(config_file=config_file), as_json=json_out)
    return ExitCode.OK


@app.command("import")
def import_cmd(
    hosts: Annotated[list[str] | None, typer.Argument(metavar="[HOST]...")] = None,
    config_file: FileOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace profiles that exist already.")
    ] = False,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Turn Host entries with LocalForward/RemoteForward/DynamicForward into profiles."""
    from sshwrap.cli.render import sshconfig as _render  # noqa: F401
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.sshimport import import_hosts

    result = import_hosts(ProfileStore.from_option(profiles), hosts or [],
                          config_file=config_file, force=force)
    emit(result, as_json=json_out)
    return ExitCode.OK if result.ok else ExitCode.BAD_INPUT
