"""The Typer application and the option types every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sshwrap.cli.complete import profile_names

app = typer.Typer(
    name="sshwrap",
    help="Declarative, named and verifiable SSH tunnels.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ProfilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--profiles",
        metavar="DIR",
        help="Profile directory (repeatable); overrides SSHWRAP_PROFILES and the defaults.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _name(value: str) -> str:
    from sshwrap.names import checked_name

    return checked_name(value)


def _name_or_file(value: str) -> str:
    from sshwrap.names import checked_name

    return checked_name(value, file_ok=True)


def _names(values: list[str] | None) -> list[str] | None:
    from sshwrap.names import checked_name

    return None if values is None else [checked_name(v) for v in values]


def _names_or_files(values: list[str] | None) -> list[str] | None:
    from sshwrap.names import checked_name

    return None if values is None else [checked_name(v, file_ok=True) for v in values]


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Profile name.", callback=_name,
                                        autocompletion=profile_names)]
NameOrFileArg = Annotated[str, typer.Argument(
    metavar="NAME", help="Profile name or path to a .toml file.", callback=_name_or_file,
    autocompletion=profile_names)]
NamesArg = Annotated[list[str] | None, typer.Argument(
    metavar="[NAME]...", callback=_names, autocompletion=profile_names)]
NamesOrFilesArg = Annotated[list[str] | None, typer.Argument(
    metavar="[NAME]...", help="Profile names or paths to .toml files.",
    callback=_names_or_files, autocompletion=profile_names)]
