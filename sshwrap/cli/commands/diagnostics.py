"""Commands that look into tunnels: ports, check, logs."""

from __future__ import annotations

from typing import Annotated

import typer

from sshwrap.cli.base import JsonOpt, NameArg, NameOrFileArg, ProfilesOpt, app
from sshwrap.cli.render import emit
from sshwrap.errors import ExitCode


@app.command()
def ports(
    port_numbers: Annotated[list[int] | None, typer.Argument(metavar="PORT")] = None,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Who listens where: every listening TCP socket with pid and program, tunnels marked."""
    from sshwrap.cli.render import diagnostics as _render  # noqa: F401
    from sshwrap.errors import InvalidInput
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.runtime.system.ports import list_ports

    bad = [p for p in port_numbers or [] if not 1 <= p <= 65535]
    if bad:
        raise InvalidInput(f"PORT: {bad[0]} is outside 1-65535")
    emit(list_ports(StatePaths.from_env(), port_numbers or []), as_json=json_out)
    return ExitCode.OK


@app.command()
def check(
    name: NameOrFileArg,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
    ask_password: Annotated[bool, typer.Option(
        "--ask-password", help="Ask for a password profile's password on the terminal.")]
    = False,
    ask_passphrase: Annotated[bool, typer.Option(
        "--ask-passphrase", help="Ask for an encrypted key's passphrase on the terminal.")]
    = False,
) -> int:
    """Walk the tunnel's path, client, gateway, server side, as it is now (exit 8 if a step
    fails, 2 for an unknown profile).

    \b
    Examples:
      sshwrap check web
      sshwrap check web --json
    """
    from sshwrap.cli.commands.auth import terminal_asker
    from sshwrap.cli.render import diagnostics as _render  # noqa: F401
    from sshwrap.runtime.client.questions import TerminalPrompter, has_terminal
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.check import run_check

    prompter = TerminalPrompter() if has_terminal() else None
    try:
        report = run_check(ProfileStore.from_option(profiles), name,
                           ask_secret=terminal_asker(password=ask_password,
                                                     passphrase=ask_passphrase),
                           ask_question=prompter)
    finally:
        if prompter is not None:
            prompter.restore()
    emit(report, as_json=json_out)
    return ExitCode.OK if report.ok else ExitCode.UNHEALTHY


@app.command()
def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")]
    = False,
    lines: Annotated[int, typer.Option("-n", "--lines", metavar="N",
                                       help="How many of the last lines to show.")] = 50,
    profiles: ProfilesOpt = None,
) -> int:
    """Show a tunnel's ssh (or plink) log; -f follows it until Ctrl-C.

    \b
    Examples:
      sshwrap logs web
      sshwrap logs -f web
    """
    import sys

    from sshwrap.errors import InvalidInput
    from sshwrap.runtime.system import logs as tunnel_logs
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.textsafe import escaped

    if lines < 0:
        raise InvalidInput("-n: must be 0 or more")
    path = tunnel_logs.log_path(StatePaths.from_env(), name)
    last, end = tunnel_logs.tail_lines(path, lines)
    # a log holds what servers and jump hosts sent: escape sequences are shown, not obeyed
    for line in last:
        sys.stdout.write(escaped(line, keep_layout=True) + "\n")
    sys.stdout.flush()
    if not follow:
        return ExitCode.OK
    try:
        for line in tunnel_logs.follow(path, end):
            sys.stdout.write(escaped(line, keep_layout=True) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return ExitCode.OK
    return ExitCode.OK
