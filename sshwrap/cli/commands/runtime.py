"""Commands that run tunnels: up, down, restart, status, demo."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from sshwrap.cli.base import (
    JsonOpt,
    NamesArg,
    NamesOrFilesArg,
    ProfilesOpt,
    app,
)
from sshwrap.cli.complete import profile_tags
from sshwrap.cli.render import emit
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT

if TYPE_CHECKING:
    from collections.abc import Callable

    from sshwrap.cli.progress import ProgressLine
    from sshwrap.usecases.up import StatusReport, TunnelsReport

AllOpt = Annotated[bool, typer.Option("--all", help="Every profile.")]
TagOpt = Annotated[str | None, typer.Option("--tag", metavar="TAG",
                                            help="Every profile with this tag.",
                                            autocompletion=profile_tags)]
WaitOpt = Annotated[float, typer.Option(
    "--wait", metavar="SECONDS", help="How long to wait for every forward to be verified.")]


def _progress_printer() -> ProgressLine | None:
    """A one-line progress display on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    from sshwrap.cli.progress import ProgressLine

    def write(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    return ProgressLine(write)


def _finish(report: TunnelsReport | StatusReport, as_json: bool,
            progress: ProgressLine | None) -> int:
    from sshwrap.cli.render.runtime import print_report

    if progress is not None:
        progress.clear()
    return print_report(report.to_wire(), as_json=as_json)


@app.command()
def up(
    *,
    names: NamesOrFilesArg = None,
    all_profiles: AllOpt = False,
    tag: TagOpt = None,
    wait: WaitOpt = DEFAULT_WAIT,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
    ask_password: Annotated[bool, typer.Option(
        "--ask-password", help="Ask for password profiles' passwords on the terminal.")] = False,
    ask_passphrase: Annotated[bool, typer.Option(
        "--ask-passphrase", help="Ask for encrypted keys' passphrases on the terminal.")] = False,
    share: Annotated[bool, typer.Option(
        "--share", help="One shared ssh connection per destination (as share_connection = "
                        "true does).")] = False,
) -> int:
    """Start tunnels; return once every forward is verified, or fail with the reason.

    \b
    Examples:
      sshwrap up web mysql
      sshwrap up --tag database --wait 60
    """
    from sshwrap.cli.commands.auth import terminal_asker
    from sshwrap.runtime.client.questions import terminal_questions
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.served import up_report

    progress = _progress_printer()
    with terminal_questions(StatePaths.from_env().root):
        report = up_report(ProfileStore.from_option(profiles), names or [],
                        all_profiles=all_profiles, tag=tag, wait=wait, progress=progress,
                        ask_secret=terminal_asker(password=ask_password,
                                                  passphrase=ask_passphrase), share=share)
    return _finish(report, json_out, progress)


@app.command()
def down(
    names: NamesArg = None,
    all_tunnels: Annotated[bool, typer.Option("--all", help="Every running tunnel.")] = False,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Stop tunnels (only processes sshwrap started); stopping what is not running is a no-op.

    \b
    Examples:
      sshwrap down web
      sshwrap down --all
    """
    from sshwrap.usecases.served import down_report

    return _finish(down_report(names or [], all_tunnels=all_tunnels), json_out, None)


@app.command()
def restart(
    *,
    names: NamesOrFilesArg = None,
    all_profiles: AllOpt = False,
    tag: TagOpt = None,
    wait: WaitOpt = DEFAULT_WAIT,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Stop and start tunnels again, applying changed profiles."""
    from sshwrap.runtime.client.questions import terminal_questions
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.served import restart_report

    progress = _progress_printer()
    with terminal_questions(StatePaths.from_env().root):
        report = restart_report(ProfileStore.from_option(profiles), names or [],
                                all_profiles=all_profiles, tag=tag, wait=wait,
                                progress=progress)
    return _finish(report, json_out, progress)


@app.command()
def status(
    names: NamesArg = None,
    json_out: JsonOpt = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="A live view, refreshed every --interval seconds (redrawn in place "
                        "on a terminal; with --json, one JSON line each time).")] = False,
    interval: Annotated[float, typer.Option("--interval", metavar="SECONDS",
                                            help="Refresh interval of --watch.")] = 1.0,
    profiles: ProfilesOpt = None,
) -> int:
    """Every tunnel's state, pid, uptime, first-hop round-trip time and forward health with
    the connections open through each (exit 8 if one is unhealthy).

    \b
    Examples:
      sshwrap status
      sshwrap status --watch
      sshwrap status web --json
    """
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.served import status_report as run_status

    store = ProfileStore.from_option(profiles)
    if not watch:
        return _finish(run_status(store, names or []), json_out, None)
    return _watch(lambda: run_status(store, names or []), interval, as_json=json_out)


def _watch(read: Callable[[], StatusReport], interval: float, *, as_json: bool) -> int:
    """``status --watch``: on a terminal the table redrawn in place, elsewhere one table (or
    with ``--json`` one JSON line) per refresh; Ctrl-C ends it with the last exit code."""
    import json
    import time

    from sshwrap.cli.render import rendered

    in_place = not as_json and sys.stdout.isatty()
    code = 0
    try:
        while True:
            report = read()
            code = int(report.exit_code)
            if as_json:
                frame = json.dumps(report.to_json(), separators=(",", ":")) + "\n"
            else:
                stamp = time.strftime("%H:%M:%S")
                # On a terminal: home the cursor and clear below, the table redrawn in place.
                frame = (f"\x1b[H\x1b[J{stamp}  (Ctrl-C to stop)\n" if in_place
                         else f"{stamp}\n") + rendered(report) + ("" if in_place else "\n")
            sys.stdout.write(frame)
            sys.stdout.flush()
            time.sleep(max(0.1, interval))
    except KeyboardInterrupt:
        return code


@app.command()
def demo() -> int:
    """Run a tunnel end to end against a private sshd on 127.0.0.1, then remove everything."""
    from sshwrap.demo import run_demo

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return int(run_demo(say, emit))

