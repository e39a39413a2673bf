"""Commands over profiles: list, validate, compile, add."""

from __future__ import annotations

from typing import Annotated

import typer

from sshwrap.cli.base import JsonOpt, NameArg, NameOrFileArg, NamesOrFilesArg, ProfilesOpt, app
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
    targets: NamesOrFilesArg = None,
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
    name: NameOrFileArg,
    to: Annotated[
        str, typer.Option("--to", help="ssh, plink, config, systemd or launchd.", metavar="TARGET")
    ] = "ssh",
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Print what a profile compiles to: an ssh or plink command, a Host block, a systemd unit
    or a launchd LaunchAgent plist.

    \b
    Examples:
      sshwrap compile web
      sshwrap compile web --to launchd > ~/Library/LaunchAgents/org.sshwrap.web.plist
    """
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



@app.command()
def add(
    name: NameArg,
    ssh_command: Annotated[
        list[str] | None,
        typer.Argument(metavar="[-- SSH COMMAND LINE]",
                       help="An ssh command line to read the profile from, after '--'."),
    ] = None,
    *,
    host: Annotated[str | None, typer.Option("--host", help="The tunnel host.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Login user.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="ssh port of the host.")] = None,
    jump: Annotated[list[str] | None, typer.Option(
        "-J", "--jump", metavar="HOP", help="Jump host [user@]host[:port] (repeatable).")] = None,
    local: Annotated[list[str] | None, typer.Option(
        "-L", "--local", metavar="SPEC", help="Local forward, as ssh -L (repeatable).")] = None,
    remote: Annotated[list[str] | None, typer.Option(
        "-R", "--remote", metavar="SPEC", help="Remote forward, as ssh -R (repeatable).")] = None,
    dynamic: Annotated[list[str] | None, typer.Option(
        "-D", "--dynamic", metavar="SPEC", help="SOCKS forward, as ssh -D (repeatable).")] = None,
    identity_file: Annotated[str | None, typer.Option(
        "--identity-file", metavar="FILE", help="Private key file.")] = None,
    compression: Annotated[bool, typer.Option(
        "-C", "--compression", help="Compress the connection.")] = False,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", metavar="TAG", help="A tag (repeatable).")] = None,
    description: Annotated[str | None, typer.Option("--description", metavar="TEXT")] = None,
    client: Annotated[str | None, typer.Option(
        "--client", metavar="ssh|plink", help="Client program (default ssh).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing profile.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the TOML instead of writing it.")] = False,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Write a new profile from flags or from a pasted ssh command line (after '--')."""
    from sshwrap.cli.render import profiles as _render  # noqa: F401
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.profiles import AddRequest, add_profile

    request = AddRequest(
        name=name, host=host, user=user, port=port, jump=tuple(jump or ()),
        local=tuple(local or ()), remote=tuple(remote or ()), dynamic=tuple(dynamic or ()),
        identity_file=identity_file, compression=compression, tags=tuple(tag or ()),
        description=description, client=client, ssh_command=tuple(ssh_command or ()),
    )
    result = add_profile(ProfileStore.from_option(profiles), request, force=force, dry_run=dry_run)
    emit(result, as_json=json_out)
    return ExitCode.OK
