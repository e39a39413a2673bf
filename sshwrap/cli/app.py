"""The ``sshwrap`` entry point: registers the commands and turns errors into exit codes."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from sshwrap.cli.base import app
from sshwrap.errors import ExitCode, SshwrapError


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


def _register_commands() -> None:
    # Each module adds its commands to ``app``; the use cases they call are imported lazily
    # inside the commands so that start-up stays fast.
    from sshwrap.cli.commands import profiles  # noqa: F401

    for optional in ("runtime", "diagnostics", "sshconfig", "service", "auth"):
        try:
            __import__(f"sshwrap.cli.commands.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sshwrap.cli.commands.{optional}":
                raise


def report_error(error: SshwrapError) -> int:
    """Print an error as ``sshwrap: error: ...`` lines (and a hint); return its exit code."""
    for line in error.lines():
        print(f"sshwrap: error: {line}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    return int(error.exit_code)


def _is_usage_error(error: Exception) -> bool:
    # Typer bundles its own click; its usage errors are recognised by their interface
    # (a message formatter and an exit code) rather than by an import path that moves.
    return hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("SSHWRAP_DEBUG", "") not in ("", "0")
    _register_commands()
    try:
        result = app(args=args, prog_name="sshwrap", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except SshwrapError as error:
        if debug:
            raise
        code = report_error(error)
    except typer.Exit as done:
        code = done.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("sshwrap: interrupted", file=sys.stderr)
        code = 130
    except Exception as error:  # the last resort: one line, the traceback only on request
        if _is_usage_error(error):
            print(f"sshwrap: error: {error.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
            print("hint: see 'sshwrap --help' or 'sshwrap COMMAND --help'", file=sys.stderr)
            sys.exit(int(ExitCode.BAD_INPUT))
        if debug:
            raise
        print(f"sshwrap: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        print("hint: run again with --debug to see the traceback", file=sys.stderr)
        code = ExitCode.INTERNAL
    sys.exit(int(code))
