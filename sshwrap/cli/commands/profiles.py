"""Commands over profiles: list, validate, compile, add."""

from __future__ import annotations

from typing import Annotated

import typer

from sshwrap.cli.base import JsonOpt, ProfilesOpt, app
from sshwrap.cli.render import emit
from sshwrap.errors import ExitCode


@app.command("list")
def list_cmd(json_out: JsonOpt = False, profiles: ProfilesOpt = None) -> int:
    """Show every profile found, with its host and forwards."""
    from sshwrap.cli.render import profiles as _render  # noqa: F401
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.profiles import list_profiles

    emit(list_profiles(ProfileStore.from_option(profiles)), as_json=json_out)
    return ExitCode.OK


@app.command()
def validate(
    targets: Annotated[list[str] | None, typer.Argument(metavar="[NAME|PATH]...")] = None,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Check profiles and report every problem at once (exit 2 if any is invalid)."""
    from sshwrap.cli.render import profiles as _render  # noqa: F401
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.profiles import validate as run_validate

    report = run_validate(ProfileStore.from_option(profiles), targets or [])
    emit(report, as_json=json_out)
    return ExitCode.OK if report.ok else ExitCode.BAD_INPUT


@app.command("compile")
def compile_cmd(
    name: Annotated[str, typer.Argument(help="Profile name or path to a .toml file.")],
    to: Annotated[
        str, typer.Option("--to", help="ssh, plink, config or systemd.", metavar="TARGET")
    ] = "ssh",
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Print what a profile compiles to: an ssh or plink command, a Host block, a unit."""
    from sshwrap.cli.render import profiles as _render  # noqa: F401
    from sshwrap.errors import InvalidInput
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.profiles import Target, compile_profile

    try:
        target = Target(to)
    except ValueError:
        raise InvalidInput(f"--to: must be one of {', '.join(t.value for t in Target)}") from None
    emit(compile_profile(ProfileStore.from_option(profiles), name, target), as_json=json_out)
    return ExitCode.OK
