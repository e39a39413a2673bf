"""The ``sshwrap`` entry point: registers the commands and turns errors into exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from sshwrap.cli.base import app
from sshwrap.cli.outcome import report
from sshwrap.errors import ExitCode


def _print_version(value: bool) -> None:
    if value:
        from sshwrap import __version__

        typer.echo(f"sshwrap {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors.", envvar="SSHWRAP_DEBUG")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version.", is_eager=True,
                     callback=_print_version),
    ] = False,
) -> None:
    """Declarative, named and verifiable SSH tunnels."""


#: The module (under sshwrap.cli.commands) that defines each command. Only the module of the
#: command being run is imported, and only that command is built: building all of them
#: costs more start-up than any one command's work.
COMMAND_MODULES = {
    "list": "profiles", "validate": "profiles", "compile": "profiles", "add": "profiles",
    "up": "runtime", "down": "runtime", "restart": "runtime", "status": "runtime",
    "demo": "runtime",
    "ports": "diagnostics", "check": "diagnostics", "logs": "diagnostics",
    "config": "sshconfig", "import": "sshconfig", "service": "service", "trust": "auth",
    "events": "events", "reload": "events", "password": "password",
}


def command_name(info: typer.models.CommandInfo) -> str:
    """A registered command's name as typed on the command line."""
    if info.name:
        return info.name
    callback = info.callback
    return "" if callback is None else callback.__name__.lower().replace("_", "-")


def _register_commands(args: list[str] | None = None) -> str | None:
    """Import the command modules: only the one of the command in ``args`` when it is known,
    every one for help, version or a mistyped command. The known command's name, or None."""
    wanted = next((a for a in args or () if not a.startswith("-")), None)
    module = COMMAND_MODULES.get(wanted or "")
    if wanted is None or module is None:
        for name in dict.fromkeys(COMMAND_MODULES.values()):
            __import__(f"sshwrap.cli.commands.{name}")
        return None
    __import__(f"sshwrap.cli.commands.{module}")
    return wanted


@contextlib.contextmanager
def _only(command: str | None) -> Iterator[None]:
    """Let the app build just ``command`` (all when None) for one run."""
    commands, groups = app.registered_commands, app.registered_groups
    if command is not None:
        app.registered_commands = [c for c in commands if command_name(c) == command]
        app.registered_groups = [g for g in groups if g.name == command]
    built_with = list(app.registered_commands), list(app.registered_groups)
    try:
        yield
    finally:
        # A command module the run imported (up imports the trust command's) registered its
        # commands meanwhile: they are kept, for a next run in the same process.
        app.registered_commands = commands + [c for c in app.registered_commands
                                              if c not in built_with[0] and c not in commands]
        app.registered_groups = groups + [g for g in app.registered_groups
                                          if g not in built_with[1] and g not in groups]


def _is_usage_error(error: Exception) -> bool:
    # Typer bundles its own click; its usage errors are recognised by their interface
    # (a message formatter and an exit code) rather than by an import path that moves.
    return hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("SSHWRAP_DEBUG", "") not in ("", "0")
    command = _register_commands(args)
    # --install-completion and --show-completion belong to the bare program (help, completion
    # requests): a known command is built without them, as cheaply as before.
    app._add_completion = command is None
    try:
        with _only(command):
            result = app(args=args, prog_name="sshwrap", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as done:
        code = done.exit_code
    except (KeyboardInterrupt, typer.Abort):
        code = report(KeyboardInterrupt())
    except Exception as error:  # sshwrap's own errors, and the last resort
        if _is_usage_error(error):
            print(f"sshwrap: error: {error.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
            print("hint: see 'sshwrap --help' or 'sshwrap COMMAND --help'", file=sys.stderr)
            sys.exit(int(ExitCode.BAD_INPUT))
        if debug:
            raise
        code = report(error)
    sys.exit(int(code))
