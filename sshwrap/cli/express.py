"""The express lane: a plain ``up``, ``down``, ``status`` or ``restart`` is run by the engine.

The engine already runs Python with the runtime imported, so a command it runs starts in
milliseconds where the full command line spends about a hundred importing itself, half of
the time ssh takes to connect. The lane takes ``up`` and ``restart`` with ``--all``,
``--tag``, ``--wait``, ``--json``, ``--profiles`` (and ``up`` with ``--share``); ``down``
with ``--all``, ``--json``; ``status`` with ``--json``; both also with ``--profiles``.
``up`` and ``restart`` start the engine when none answers; ``down`` and ``status`` are then
left to the full command line, as is anything else (other options, help, a profile given as
a file), with the same result. It sends the request the full command line sends, through the
one client of the engine (runtime/engine/client.py), and prints the report's wire form as
it came with the one renderer (cli/render/runtime.py); only its parsing is its own. It
imports no more than os, sys, socket, json and that renderer: no typing, no results' classes.
"""

from __future__ import annotations

import os
import sys

from sshwrap.runtime.system import rendezvous

#: typing costs this light process a tenth of its start-up; type checkers take the name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any


#: Set to 0 to run every command through the full command line.
EXPRESS_ENV = "SSHWRAP_EXPRESS"
#: How long a request may wait to be taken up before the full command line runs it instead.
CONNECT_TIMEOUT = 2.0
#: Every option of the commands the lane takes, as the full command line declares it
#: (cli/commands/runtime.py): whether it takes a value, and its default; a command with one
#: that is ``LEFT`` goes to the full command line. tests/supervision/test_express.py holds
#: this to the Typer commands, option by option.
LEFT = "left to the full command line"
_STARTING: dict[str, Any] = {
    "--all": (False, False), "--tag": (True, None), "--json": (False, False),
    "--wait": (True, rendezvous.DEFAULT_WAIT), "--profiles": (True, None)}
OPTIONS: dict[str, dict[str, Any]] = {
    "up": {**_STARTING, "--share": (False, False), "--ask-password": LEFT,
           "--ask-passphrase": LEFT},
    "restart": _STARTING,
    "down": {"--all": (False, False), "--json": (False, False), "--profiles": (True, None)},
    "status": {"--json": (False, False), "--profiles": (True, None), "--watch": LEFT,
               "--interval": LEFT},
}


def main() -> None:
    """The ``sshwrap`` entry point: the express lane when it takes the command, else the full
    command line."""
    try:
        code = run_express(sys.argv[1:])
    except KeyboardInterrupt as interrupt:  # before the request went out, or while it closed
        from sshwrap.cli.outcome import report

        sys.exit(report(interrupt))
    if code is None:
        from sshwrap.cli.app import main as full_command_line

        full_command_line()
    sys.exit(code)


# -- the client half: runs in the ``sshwrap`` process, before anything heavy is imported --


def parse_up(args: list[str]) -> dict[str, Any] | None:
    """The request for an ``up`` the lane takes, or None to leave it to the full command line."""
    return parse_request(args) if args[:1] == ["up"] else None


def parse_request(args: list[str]) -> dict[str, Any] | None:
    """The request for a command the lane takes, or None to leave it to the full command line.

    Options are read as the full command line reads them (the last of a repeated one wins);
    anything it might read differently is left to it."""
    if not args or args[0] not in OPTIONS or os.environ.get(EXPRESS_ENV, "1") == "0" \
            or os.environ.get("SSHWRAP_DEBUG", "") not in ("", "0"):
        return None
    taken = {option: spec for option, spec in OPTIONS[args[0]].items() if spec != LEFT}
    with_value = [option for option, (value, _default) in taken.items() if value]
    flags = [option for option, (value, _default) in taken.items() if not value]
    request: dict[str, Any] = {"op": args[0], "names": [], "all": False, "tag": None,
                               "wait": rendezvous.DEFAULT_WAIT, "json": False, "share": False,
                               **{o[2:]: default for o, (_v, default) in taken.items()},
                               "profiles": []}
    rest = iter(args[1:])
    for arg in rest:
        option, has_value, value = arg.partition("=")
        if option in with_value:
            if not _take_value(request, option, value if has_value else next(rest, "-")):
                return None
        elif arg in flags:
            request[arg[2:]] = True
        elif arg.startswith("-") or "/" in arg or arg.endswith(".toml"):
            return None  # another option, or a profile named by its file
        else:
            request["names"].append(arg)
    return request


def _take_value(request: dict[str, Any], option: str, value: str) -> bool:
    """Put an option's value in the request; False when the full command line should judge it."""
    if not value or value.startswith("-"):
        return False
    if option == "--tag":
        request["tag"] = value
    elif option == "--profiles":
        request["profiles"].append(os.path.abspath(os.path.expanduser(value)))
    else:
        try:
            wait = float(value)
        except ValueError:
            return False
        import math

        if not math.isfinite(wait):
            return False
        request["wait"] = wait
    return True


def run_express(args: list[str]) -> int | None:
    """Run ``args`` in the express lane; its exit code, or None when the lane does not take it
    (nothing has been done then)."""
    request = parse_request(args)
    if request is None:
        return None
    root = rendezvous.state_root(os.environ)
    path = rendezvous.preferred_supervisor_socket(root)
    if path is None or not rendezvous.private_socket_folder(root):
        return None
    connected = _connect(path, request, starts=request["op"] in ("up", "restart"))
    if connected is None:
        return None  # no engine (and none started): the full command line runs it
    conn, started = connected
    from sshwrap.runtime.engine import client

    try:
        if request["op"] in ("up", "restart") and sys.stdin.isatty():
            # A start asks the server's questions (a one-time code) on this terminal, if any:
            # the engine relays them (runtime/client/questions.py).
            from sshwrap.runtime.client.questions import terminal_questions

            with terminal_questions(root):
                code = _asked(conn, request)
        else:  # nobody to ask (nor contextlib to load)
            code = _asked(conn, request)
    except client.Unreachable:
        return None  # the engine was exiting and never read it: the full command line
    finally:
        conn.close()
    if code and started:
        # Bad input or a failed first start left the engine we started with nothing to run:
        # it goes now rather than idle for minutes after a command that changed nothing.
        from sshwrap.runtime.engine import daemon
        from sshwrap.runtime.system.paths import StatePaths

        daemon.stop_if_idle(StatePaths.from_env())
    return code


def _asked(conn: socket.socket, request: dict[str, Any]) -> int:
    """Send the command's request (the one the full command line sends), follow its progress,
    and print its report with the one renderer, from the engine's answer as it came; an error
    the engine answered ends it as the full command line ends one (cli/outcome.py)."""
    from sshwrap.runtime.engine import client

    progress = None
    if request["op"] in ("up", "restart") and sys.stderr.isatty():
        from sshwrap.cli.progress import ProgressLine

        progress = ProgressLine(_write_stderr)
    options = {k: v for k, v in request.items() if k not in ("op", "names", "json", "profiles")}
    client.send(conn, client.command(request["op"], request["names"],
                                     profiles=request["profiles"],
                                     **{**options, "progress": progress is not None}))

    def interrupted() -> None:  # said at once; the engine then stops what this up started
        from sshwrap.cli.outcome import report

        if progress is not None:
            progress.clear()
        report(KeyboardInterrupt())

    try:
        final = client.answer(conn, progress=progress, on_interrupt=interrupted)
    except client.Unreachable:
        raise
    except KeyboardInterrupt:
        from sshwrap.cli.outcome import INTERRUPTED

        return INTERRUPTED
    except Exception as error:  # as the full command line ends it
        if progress is not None:
            progress.clear()
        from sshwrap.cli.outcome import report

        return report(error)
    if progress is not None:
        progress.clear()
    from sshwrap.cli.render.runtime import print_report

    return print_report(final["report"], as_json=request["json"])


def _connect(path: str, request: dict[str, Any], *,
             starts: bool) -> tuple[socket.socket, bool] | None:
    """A connection to the engine at ``path``, and whether this command started that engine.

    A command that starts tunnels starts the engine when none answers (it runs the command as
    it runs any: the full command line is never loaded); the others leave it to the full
    command line (None)."""
    from sshwrap.runtime.engine import client

    started = False
    while True:
        try:
            conn = client.connect(path, CONNECT_TIMEOUT)  # a full backlog is waited out
        except OSError:
            if started or not starts or not _start_engine(request):
                return None
            started = True
            continue
        conn.settimeout(None)
        return conn, started


def _start_engine(request: dict[str, Any]) -> bool:
    """Start the engine for ``request`` if its input is clean (_starts_cleanly); True once it
    answers. Its interpreter starts and imports itself while this process checks the input:
    held until then, it writes nothing, and goes if the input is bad (runtime/system/detach.py)."""
    from sshwrap.runtime.system.detach import HeldEngine
    from sshwrap.runtime.system.rendezvous import state_root

    try:
        held = HeldEngine(state_root(os.environ), os.environ)
    except OSError:
        return False  # the full command line tries again, and says why
    try:
        if not _starts_cleanly(request):
            held.cancel()
            return False
    except BaseException:
        held.cancel()
        raise
    from sshwrap.runtime.engine.daemon import engine_answers

    return engine_answers(os.environ, held)


def _starts_cleanly(request: dict[str, Any]) -> bool:
    """True when the request selects valid profiles that need no secret from a terminal or
    a keyring: only then is an engine started for it. Anything else goes to the full command
    line, which reports bad input in its own words with nothing started and nothing written
    (the engine, once started, would have made its state directory)."""
    from pathlib import Path

    from sshwrap.core.model import AuthMethod
    from sshwrap.errors import SshwrapError
    from sshwrap.store import ProfileStore, default_profile_dirs
    from sshwrap.usecases.selection import check_wait, select_profiles

    # As the engine finds them (usecases/served.py store_of): from the caller's directory.
    dirs = request["profiles"] or default_profile_dirs(dict(os.environ))
    store = ProfileStore(tuple(Path(os.getcwd(), d) for d in dirs))
    try:
        if request["wait"] is not None:
            check_wait(float(request["wait"]))
        profiles = select_profiles(store, request["names"], all_profiles=request["all"],
                                   tag=request["tag"])
    except (SshwrapError, OSError):
        return False
    return all(p.auth is not AuthMethod.PASSWORD for p in profiles)


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
