"""The express lane: a plain ``up``, ``down``, ``status`` or ``restart`` is run by the engine.

The engine already runs Python with the runtime imported, so a command it runs starts in
milliseconds where the full command line spends about a hundred importing itself, half of
the time ssh takes to connect. The lane takes ``up`` and ``restart`` with ``--all``,
``--tag``, ``--wait``, ``--json``, ``--profiles`` (and ``up`` with ``--share``); ``down``
with ``--all``, ``--json``; ``status`` with ``--json``; both also with ``--profiles``.
``up`` and ``restart`` start the engine when none answers; ``down`` and ``status`` are then
left to the full command line, as is anything else (other options, help, a profile given as
a file), with the same result. Once connected, the client half below imports only os, sys
and the standard library's socket and json; the engine's half imports the rest
when it first serves (cli/express_served.py), and renders with the full command line's
renderer.
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

    from sshwrap.cli.progress import ProgressLine

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
    try:
        with _questions(request, root):
            request.update(cwd=os.getcwd(), env=dict(os.environ), progress=sys.stderr.isatty())
            import json

            try:
                conn.sendall(json.dumps(request).encode() + b"\n")
                code = _follow(_Lines(conn), show_progress=request["progress"])
            except (ConnectionResetError, BrokenPipeError):
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


def _questions(request: dict[str, Any], root: str) -> Any:
    """A start asks the server's questions (a one-time code) on this terminal, if any."""
    import contextlib  # a start with a terminal only: the engine relays (client/questions.py)

    if request["op"] in ("up", "restart") and sys.stdin.isatty():
        from sshwrap.runtime.client.questions import terminal_questions

        return terminal_questions(root)
    return contextlib.nullcontext()


def _connect(path: str, request: dict[str, Any], *,
             starts: bool) -> tuple[socket.socket, bool] | None:
    """A connection to the engine at ``path``, and whether this command started that engine.

    A command that starts tunnels starts the engine when none answers (it runs the command as
    it runs any: the full command line is never loaded); the others leave it to the full
    command line (None)."""
    import socket

    started = False
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(CONNECT_TIMEOUT)
        try:
            rendezvous.connect(conn, path, CONNECT_TIMEOUT)  # a full backlog is waited out
        except OSError:
            conn.close()
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


class _Lines:
    """The answers of the supervisor, one JSON line each."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._buffer = b""

    def next(self) -> bytes:
        """The next line; b"" once the supervisor has closed the connection."""
        while b"\n" not in self._buffer:
            chunk = self.conn.recv(1 << 16)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"


def _follow(lines: _Lines, *, show_progress: bool) -> int | None:
    """Show the answers of a request as they come; its exit code, or None if it was not run."""
    import json

    progress = None
    while True:
        try:
            line = lines.next()
        except KeyboardInterrupt:
            return _interrupted(lines, progress)
        if not line.endswith(b"\n"):
            return None  # the supervisor went away before it answered: start afresh
        frame = json.loads(line)
        if "progress" in frame and show_progress:
            if progress is None:
                from sshwrap.cli.progress import ProgressLine

                progress = ProgressLine(_write_stderr)
            progress(*frame["progress"])
        elif "exit" in frame:
            if progress is not None:
                progress.clear()
            sys.stdout.write(frame.get("stdout", ""))
            sys.stdout.flush()
            sys.stderr.write(frame.get("stderr", ""))
            if frame.get("quitting"):  # down --all: the engine is gone once it hangs up
                while lines.next():
                    pass
            return int(frame["exit"])


def _interrupted(lines: _Lines, progress: ProgressLine | None) -> int:
    """Ctrl-C: tell the supervisor (it stops what this up started) and wait until it has;
    a second Ctrl-C leaves at once."""
    import socket

    from sshwrap.cli.outcome import report

    if progress is not None:
        progress.clear()
    code = report(KeyboardInterrupt())
    try:
        lines.conn.shutdown(socket.SHUT_WR)
        while lines.next():
            pass
    except (KeyboardInterrupt, OSError):
        pass
    return code


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
