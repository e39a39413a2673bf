"""The express lane: a plain ``up``, ``down``, ``status`` or ``restart`` is run by the engine.

The engine already runs Python with the runtime imported, so a command it runs starts in
milliseconds where the full command line spends about a hundred importing itself, half of
the time ssh takes to connect. The lane takes ``up`` and ``restart`` with ``--all``,
``--tag``, ``--wait``, ``--json``, ``--profiles`` (and ``up`` with ``--share``); ``down``
with ``--all``, ``--json``; ``status`` with ``--json``; both also with ``--profiles``.
``up`` and ``restart`` start the engine when none answers; ``down`` and ``status`` are then
left to the full command line, as is anything else (other options, help, a profile given as
a file), with the same result. Once connected, the client half below imports only os, sys
and the C modules of sockets and JSON (cli/jsonline.py); the engine's half imports the rest
when it first serves, and renders with the full command line's renderer.
"""

from __future__ import annotations

import os
import sys

#: typing costs this light process a tenth of its start-up; type checkers take the name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable
    from typing import Any

    from sshwrap.cli.progress import ProgressLine
    from sshwrap.runtime.engine.resident import ResidentSupervisor
    from sshwrap.runtime.system.wire import Channel

#: Set to 0 to run every command through the full command line.
EXPRESS_ENV = "SSHWRAP_EXPRESS"
#: How long a request may wait to be taken up before the full command line runs it instead.
CONNECT_TIMEOUT = 2.0
#: The commands the lane takes: the options of each that take a value, and its flags.
_STARTING = (("--tag", "--wait", "--profiles"), ("--all", "--json"))
_COMMANDS = {"up": (_STARTING[0], (*_STARTING[1], "--share")), "restart": _STARTING,
             "down": (("--profiles",), ("--all", "--json")),
             "status": (("--profiles",), ("--json",))}


def main() -> None:
    """The ``sshwrap`` entry point: the express lane when it takes the command, else the full
    command line."""
    try:
        code = run_express(sys.argv[1:])
    except KeyboardInterrupt:  # before the request went out, or while it was closed
        sys.stderr.write("sshwrap: interrupted\n")
        sys.exit(130)
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
    if not args or args[0] not in _COMMANDS or os.environ.get(EXPRESS_ENV, "1") == "0" \
            or os.environ.get("SSHWRAP_DEBUG", "") not in ("", "0"):
        return None
    with_value, flags = _COMMANDS[args[0]]
    request: dict[str, Any] = {"op": args[0], "names": [], "all": False, "tag": None,
                               "wait": None, "json": False, "profiles": [], "share": False}
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
    from sshwrap.runtime.system.rendezvous import (
        preferred_supervisor_socket,
        private_socket_folder,
        state_root,
    )

    root = state_root(os.environ)
    path = preferred_supervisor_socket(root)
    if path is None or not private_socket_folder(root):
        return None
    connected = _connect(path, request, starts=request["op"] in ("up", "restart"))
    if connected is None:
        return None  # no engine (and none started): the full command line runs it
    conn, started = connected
    try:
        request.update(cwd=os.getcwd(), env=dict(os.environ), progress=sys.stderr.isatty())
        from sshwrap.cli import jsonline

        try:
            conn.sendall(jsonline.dumps(request).encode() + b"\n")
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


def _connect(path: str, request: dict[str, Any], *,
             starts: bool) -> tuple[_socket.socket, bool] | None:
    """A connection to the engine at ``path``, and whether this command started that engine.

    A command that starts tunnels starts the engine when none answers (it runs the command as
    it runs any: the full command line is never loaded); the others leave it to the full
    command line (None)."""
    # The C socket module: socket.py would add a tenth to this start-up (enum, selectors).
    import _socket

    started = False
    while True:
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        conn.settimeout(CONNECT_TIMEOUT)
        try:
            conn.connect(path)
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

    def __init__(self, conn: _socket.socket) -> None:
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
    from sshwrap.cli import jsonline

    progress = None
    while True:
        try:
            line = lines.next()
        except KeyboardInterrupt:
            return _interrupted(lines, progress)
        if not line.endswith(b"\n"):
            return None  # the supervisor went away before it answered: start afresh
        frame = jsonline.loads(line.decode())
        if "progress" in frame and show_progress:
            if progress is None:
                from sshwrap.cli.progress import ProgressLine

                progress = ProgressLine(_write_stderr)
            progress(*frame["progress"])
        elif frame.get("fallback"):
            return None
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
    import _socket

    if progress is not None:
        progress.clear()
    sys.stderr.write("sshwrap: interrupted\n")
    try:
        lines.conn.shutdown(_socket.SHUT_WR)
        while lines.next():
            pass
    except (KeyboardInterrupt, OSError):
        pass
    return 130


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


# -- the resident half: runs in the resident supervisor --------------------------------------


def _rendered(work: Callable[[], dict[str, Any]], channel: Channel,
              resident: ResidentSupervisor, message: dict[str, Any]) -> None:
    """Send the answer of ``work`` (exit code, stdout, stderr, as the full command line prints
    them), or its error as the full command line prints it."""
    from sshwrap.cli.render import error_text, internal_error_text
    from sshwrap.errors import ExitCode, SshwrapError

    try:
        answer = work()
    except SshwrapError as error:
        answer = {"exit": int(error.exit_code), "stdout": "", "stderr": error_text(error)}
    except Exception as error:  # as the full command line does: one line, and a hint
        resident.say(f"{message['op']}: internal error: {type(error).__name__}: {error}")
        answer = {"exit": int(ExitCode.INTERNAL), "stdout": "",
                  "stderr": internal_error_text(error)}
    channel.send(answer)


def _report(report: Any, message: dict[str, Any]) -> dict[str, Any]:
    from sshwrap.cli.render.runtime import report_streams

    out, err = report_streams(report, as_json=message["json"])
    return {"exit": int(report.exit_code), "stdout": out, "stderr": err}


def _names(message: dict[str, Any], *, file_ok: bool) -> list[str]:
    from sshwrap.names import checked_name

    return [checked_name(n, file_ok=file_ok) for n in message["names"]]  # as the CLI does


def serve_up(message: dict[str, Any], channel: Channel, resident: ResidentSupervisor) -> None:
    """Run one ``up`` for a client of the lane and send it the outcome, rendered as the full
    command line renders it; when the asker hangs up, what this up started is stopped."""
    from sshwrap.usecases import up as tunnels
    from sshwrap.usecases.served import Asker, store_of

    def work() -> dict[str, Any]:
        store, env = store_of(message)
        wait = tunnels.DEFAULT_WAIT if message["wait"] is None else float(message["wait"])
        names = _names(message, file_ok=True)
        profiles = tunnels.up_selection(store, names, all_profiles=message["all"],
                                        tag=message["tag"], wait=wait)
        with Asker(channel, resident, show_progress=message["progress"]) as asker:
            report = tunnels.start_selected(profiles, store, wait=wait, paths=resident.paths,
                                            progress=asker.progress, environ=env,
                                            share=message["share"], hosting=resident.hosting)
        asker.stop_abandoned(report)
        return _report(report, message)

    _rendered(work, channel, resident, message)


def serve_restart(message: dict[str, Any], channel: Channel,
                  resident: ResidentSupervisor) -> None:
    """``restart`` for a client of the lane: stop and start inside the engine."""
    from sshwrap.usecases.served import Asker, restart_here

    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=True)
        with Asker(channel, resident, show_progress=message["progress"]) as asker:
            report = restart_here(resident, message, asker.progress)
        asker.stop_abandoned(report)
        return _report(report, message)

    _rendered(work, channel, resident, message)


def serve_down(message: dict[str, Any], channel: Channel, resident: ResidentSupervisor) -> None:
    """``down`` for a client of the lane; after ``down --all`` the engine may exit, and then
    holds the connection until it has."""
    from sshwrap.usecases.served import down_here, park_until_exit

    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=False)
        report, quitting = down_here(resident, message)
        return {**_report(report, message), "quitting": quitting}

    _rendered(work, channel, resident, message)
    if resident.quit.is_set():
        park_until_exit(resident)


def serve_status(message: dict[str, Any], channel: Channel,
                 resident: ResidentSupervisor) -> None:
    """``status`` for a client of the lane, from the engine's live view."""
    from sshwrap.cli.render import rendered
    from sshwrap.cli.render import runtime as _render  # noqa: F401 - registers the table
    from sshwrap.usecases.served import status_here

    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=False)
        report = status_here(resident, message)
        return {"exit": int(report.exit_code), "stdout": rendered(report, as_json=message["json"]),
                "stderr": ""}

    _rendered(work, channel, resident, message)


#: What the lane asks of the engine, registered by the composition root (sshwrap/__main__.py).
COMMANDS = {"up": serve_up, "restart": serve_restart, "down": serve_down,
            "status": serve_status}
