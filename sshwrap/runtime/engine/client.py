"""The one client of the engine's socket: each command's request, sent, and its frames read.

Every front end speaks to the engine through this module (the express lane, the command
line's use cases, the Python API, ``events``, ``reload``, the engine's own ping and stop).
It imports only the standard library's os, socket and json, so the lane stays light; an
error the engine answered as data is raised as itself (runtime/system/wire.py).
"""

from __future__ import annotations

import json
import os
import socket

from sshwrap.runtime.system import rendezvous

#: typing costs the express lane a tenth of its start-up; type checkers take the names.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Any

#: The longest reply line read (a status of a thousand tunnels fits in far less).
MAX_FRAME = 1 << 24
#: How long ``down --all``'s asker waits for the exiting engine to hang up.
EXIT_WAIT = 15.0

#: What each command's request carries besides its op and names; ``where`` is the asker's
#: profile folders, working directory and environment (for the commands that read profiles).
FIELDS: dict[str, tuple[str, ...]] = {
    "up": ("all", "tag", "wait", "share", "progress", "secrets", "where"),
    "restart": ("all", "tag", "wait", "progress", "where"),
    "down": ("all",),
    "status": ("where",),
}


class Unreachable(OSError):
    """No engine answers on the socket, or it went away before it answered (exiting, or an
    engine of an older sshwrap that knows no such request): nothing of the request was done."""


def command(op: str, names: Sequence[str], *, profiles: Sequence[str] = (),
            **options: Any) -> dict[str, Any]:
    """The request of ``up``, ``restart``, ``down`` or ``status``, as every front end sends
    it: ``options`` are the command's own (all, tag, wait, share, progress, secrets; those it
    has not are left out), ``profiles`` the folders it reads profiles from (none: the
    defaults, found by the engine from the asker's environment)."""
    request: dict[str, Any] = {"op": op, "names": list(names)}
    for key in FIELDS[op]:
        if key == "where":
            request.update(profiles=list(profiles), cwd=os.getcwd(), env=dict(os.environ))
        elif options.get(key) is not None:
            request[key] = options[key]
    return request


def connect(path: str, timeout: float) -> socket.socket:
    """A connection to the engine listening at ``path`` (a full backlog is waited out for up
    to ``timeout``: TimeoutError then); Unreachable when nothing listens."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        rendezvous.connect(conn, path, timeout)
    except TimeoutError:
        conn.close()
        raise
    except OSError as error:
        conn.close()
        raise Unreachable(str(error)) from None
    return conn


def send(conn: socket.socket, message: Mapping[str, Any]) -> None:
    """Send one request; Unreachable when an exiting engine closed the socket unread."""
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except (ConnectionResetError, BrokenPipeError) as error:
        raise Unreachable(str(error)) from None


def frames(conn: socket.socket) -> Iterator[dict[str, Any]]:
    """The frames the engine sends, one JSON object a line, until it hangs up."""
    with conn.makefile("rb") as reader:
        while True:
            try:
                line = reader.readline(MAX_FRAME)
            except (ConnectionResetError, BrokenPipeError):
                return
            if not line.endswith(b"\n"):
                return  # hung up (a line cut short is not an answer)
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            if isinstance(frame, dict):
                yield frame


def answer(conn: socket.socket, *, progress: Callable[[str, int, int], None] | None = None,
           on_interrupt: Callable[[], None] | None = None, log: str = "") -> dict[str, Any]:
    """The final frame of a request sent on ``conn``; progress frames before it go to
    ``progress``. An error answered is raised as itself; Unreachable when the engine went
    away first. On Ctrl-C, ``on_interrupt`` is called, the engine is told (it stops what the
    request started) and waited for, unless Ctrl-C comes again; then KeyboardInterrupt goes on."""
    replies = frames(conn)
    try:
        for frame in replies:
            if "progress" in frame:
                if progress is not None:
                    progress(*frame["progress"])
                continue
            final = _checked(frame, log)
            if final.get("quitting"):  # down --all: the engine is gone once it hangs up
                conn.settimeout(EXIT_WAIT)
                for _rest in replies:
                    pass
            return final
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        _hang_up(conn)
        raise
    except OSError as error:  # no answer within the timeout too: nothing to read
        if isinstance(error, Unreachable):
            raise
        raise Unreachable(str(error) or type(error).__name__) from None
    raise Unreachable("the engine hung up before it answered")


def _checked(frame: dict[str, Any], log: str) -> dict[str, Any]:
    error = frame.get("error")
    if frame.get("exiting") or isinstance(error, str):
        raise Unreachable("the engine is exiting, or does not know the request")
    if error is not None:
        from sshwrap.runtime.system.wire import error_from_data

        raise error_from_data(error)
    if "internal" in frame:
        from sshwrap.errors import SshwrapError

        raise SshwrapError(f"internal error of the engine: {frame['internal']}",
                           hint=f"see {log}" if log else "")
    return frame


def _hang_up(conn: socket.socket) -> None:
    """Tell the engine this asker is gone, and wait until it has stopped what it started."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(None)
        while conn.recv(1 << 16):
            pass
    except (KeyboardInterrupt, OSError):
        pass


def first_frame(path: str, message: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    """The first frame the engine answers ``message`` with, as it is (the engine's own
    requests: ping, start, stop, quit, reload); Unreachable when none came."""
    with connect(path, timeout) as conn:
        send(conn, message)
        try:
            for frame in frames(conn):
                return frame
        except (ConnectionResetError, BrokenPipeError) as error:
            raise Unreachable(str(error)) from None
    raise Unreachable("the engine closed the connection without an answer")


def call(path: str, message: Mapping[str, Any], *, timeout: float | None,
         connect_timeout: float = rendezvous.CONNECT_WAIT,
         progress: Callable[[str, int, int], None] | None = None,
         log: str = "") -> dict[str, Any]:
    """Send ``message`` to the engine at ``path`` and return its final answer (answer())."""
    with connect(path, connect_timeout) as conn:
        send(conn, message)
        conn.settimeout(timeout)
        return answer(conn, progress=progress, log=log)
