"""The password command: store or delete a profile's password in the system keyring."""

from __future__ import annotations

import sys

import typer

from sshwrap.cli.base import NameArg, ProfilesOpt, app
from sshwrap.cli.render import emit
from sshwrap.errors import ExitCode, InvalidInput

password_app = typer.Typer(
    help="Keep passwords of auth = \"password\" profiles in the system keyring "
         "(password_keyring = true).", no_args_is_help=True)
app.add_typer(password_app, name="password")


def _read_secret(name: str) -> str:
    """Hidden terminal input, typed twice; without a terminal, the first line of stdin (so a
    password manager can pipe it in). Never an argument: argv is visible to every user."""
    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != secret:
            raise InvalidInput("password: the two entries differ; nothing was stored")
    else:
        secret = sys.stdin.readline().removesuffix("\n")
    if not secret:
        raise InvalidInput("password: it is empty; nothing was stored")
    if "\n" in secret or "\0" in secret:
        raise InvalidInput("password: it contains a line break or NUL byte; nothing was stored")
    return secret


@password_app.command("set")
def set_cmd(name: NameArg, profiles: ProfilesOpt = None) -> int:
    """Store NAME's password in the keyring (service sshwrap), read with a hidden prompt.

    \b
    Examples:
      sshwrap password set db
      pass show db-tunnel | sshwrap password set db
    """
    from sshwrap.runtime.client.keyring_secret import SERVICE, store_password
    from sshwrap.store import ProfileStore

    profile = ProfileStore.from_option(profiles).load(name)  # a mistyped name stores nothing
    store_password(profile.name, _read_secret(profile.name))
    emit(f"{profile.name}: password stored in the keyring (service {SERVICE})")
    if not profile.password_keyring:
        typer.echo(f"{profile.name}: note: the profile reads it only with auth = \"password\" "
                   "and password_keyring = true", err=True)
    return ExitCode.OK


@password_app.command("delete")
def delete_cmd(name: NameArg) -> int:
    """Remove NAME's password from the keyring; none stored is no error."""
    from sshwrap.runtime.client.keyring_secret import delete_password

    emit(f"{name}: password deleted from the keyring" if delete_password(name)
         else f"{name}: no password stored in the keyring")
    return ExitCode.OK
