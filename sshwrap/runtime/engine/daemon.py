"""The client of the engine (runtime/engine/resident.py): find it, start it when needed, ask it.

It speaks through the one client of the socket (runtime/engine/client.py). ``up`` asks it
to start a tunnel and gets the first attempt's result, an error as itself
(runtime/system/wire.py); ``down`` asks it to stop one; ``down --all`` asks it to exit when idle.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sshwrap.errors import StateConflict
from sshwrap.runtime.engine import client
from sshwrap.runtime.engine.client import Unreachable
from sshwrap.runtime.system.detach import HeldEngine, is_engine
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.rendezvous import SUPERVISOR_SOCKET

__all__ = ["Unreachable"]  # raised by request() and the callers' own; defined by the client

#: How long ``up`` waits for an engine it started to answer.
START_TIMEOUT = 10.0
#: How long a stopping tunnel's thread may take (its client's SIGTERM, then SIGKILL).
STOP_JOIN = 15.0


def socket_path(paths: StatePaths, *, create: bool = False) -> Path:
    """Where it listens: in the private socket dir, short enough for a unix socket path;
    that folder is made only with ``create`` (FileNotFoundError when there is none)."""
    from sshwrap.runtime.supervise.shared import control_dir

    return control_dir(paths, create=create) / SUPERVISOR_SOCKET


def lock_path(paths: StatePaths) -> Path:
    return paths.root / "supervisor.lock"


def log_path(paths: StatePaths) -> Path:
    """Its own messages (tunnels' messages go to their logs); outside logs/, where a tunnel
    could be named ``supervisor``."""
    return paths.root / "supervisor.log"


def has_run(paths: StatePaths) -> bool:
    """True when an engine has run in the state dir (it makes its lock first); the state
    dir judged on the way (StateUnusable when it is not this user's own), nothing made."""
    return paths.exists() and os.path.lexists(lock_path(paths))


def is_resident(argv: Sequence[str]) -> bool:
    """True when a record's supervisor command line is the engine's."""
    return is_engine(argv)


# -- the client side: up and down ---------------------------------------------------------


def request(paths: StatePaths, message: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    """Send one of the engine's own requests and return its answer as it is; Unreachable
    when nothing listens."""
    return client.first_frame(str(engine_socket(paths)), message, timeout=timeout)


def engine_socket(paths: StatePaths) -> Path:
    """Where the engine of ``paths`` listens; Unreachable when no engine has run there.

    No engine has ever run where it has no lock yet (it makes it first): looking for its
    socket must not make the socket folder (status and down of a state dir where nothing
    ran change nothing)."""
    if not has_run(paths):
        raise Unreachable(f"no engine has run in {paths.root}")
    try:
        return socket_path(paths)
    except OSError as error:  # no socket folder, and none can be made: nothing listens
        raise Unreachable(str(error)) from None


def start_request(paths: StatePaths, message: Mapping[str, Any], *, timeout: float,
                  local: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                  ) -> dict[str, Any]:
    """Ask the resident supervisor of ``paths`` to start a tunnel (``op: start``), starting
    the supervisor first if none runs; ``local``: that engine's own start, when it serves
    the caller (no request over its socket to itself)."""
    if local is not None:
        return local(dict(message))
    # An engine may go between our ping and our request (``down --all`` asked it to exit
    # while idle): then a new one is started, once.
    for attempt in (1, 2):
        ensure_running(paths, message["env"])
        try:
            answer = request(paths, message, timeout=timeout)
        except Unreachable:
            if attempt == 2:
                raise
            wait_gone(paths, STOP_JOIN)
            continue
        if not answer.get("exiting") or attempt == 2:
            return answer
        wait_gone(paths, STOP_JOIN)
    raise Unreachable("the engine went away")  # pragma: no cover - the loop returns


def ensure_running(paths: StatePaths, env: Mapping[str, str],
                   held: HeldEngine | None = None) -> bool:
    """Start the engine of ``paths`` unless one answers already: ``held``, when given (the
    express lane started it while it checked its input), else a new one. True when this
    call started it.

    Two ``up`` racing here may both start one: the second finds the lock taken and exits,
    and both talk to the first. An engine that is exiting (``down --all``) holds the lock
    until it is gone: then a new one is started.
    """
    # The threads of one ``up`` of many tunnels all find no engine at once: one of them
    # starts it, the others wait for it on the state dir's own lock for it, rather than each
    # start an interpreter that exits on finding the lock taken (thirty-two of them, on a
    # machine of two cores).
    with paths.thread_lock(lock_path(paths)):
        return _start_unless_running(paths, env, held)


def _start_unless_running(paths: StatePaths, env: Mapping[str, str],
                          held: HeldEngine | None) -> bool:
    from sshwrap.runtime.system.state import file_lock_is_free, state_errors

    log = log_path(paths)
    process = None
    deadline = time.monotonic() + START_TIMEOUT
    # A ``held`` engine left unreleased (another engine answered first) is the caller's to
    # cancel (engine_answers).
    while True:
        try:
            request(paths, {"op": "ping"}, timeout=START_TIMEOUT)
            return process is not None
        except Unreachable:
            pass
        except TimeoutError:  # one answers the socket, but is too busy to answer us
            raise StateConflict(f"the engine did not answer within {START_TIMEOUT:g} s",
                                hint=f"see {log}") from None
        exited = process is not None and process.poll() is not None
        if exited and process is not None and process.returncode != 0:
            raise StateConflict(f"the engine did not start (status {process.returncode})",
                                hint=f"see {log}")
        if (process is None or exited) and file_lock_is_free(lock_path(paths)):
            with state_errors(paths):  # its log is the state dir's first write
                started, held = held or HeldEngine(str(paths.root), env, log), None
            process = started.release()
        if time.monotonic() >= deadline:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            raise StateConflict("the engine did not answer within "
                                f"{START_TIMEOUT:g} s", hint=f"see {log}")
        time.sleep(0.005)


def engine_answers(env: Mapping[str, str], held: HeldEngine | None = None) -> bool:
    """Start the engine of the state dir ``env`` names unless one answers (``held``, when
    given), and wait until it does; False when none could be started (the full command
    line then says why).

    For the express lane of ``up`` when it finds no engine: the engine it then starts
    runs the ``up`` as it runs any, and this process never loads the full command line."""
    from sshwrap.errors import SshwrapError
    from sshwrap.runtime.system.rendezvous import state_root

    try:
        paths = StatePaths(Path(state_root(env))).ensure()
        ensure_running(paths, env, held)
    except (OSError, SshwrapError):
        return False
    finally:
        if held is not None:
            held.cancel()  # unless it was released: it was not needed, or could not serve
    return True


def stop_if_idle(paths: StatePaths, *, timeout: float = STOP_JOIN) -> None:
    """Ask the resident supervisor to exit if it supervises nothing (``down --all``), and
    wait until it has; nothing happens when none runs."""
    try:
        answer = request(paths, {"op": "quit", "only_if_idle": True}, timeout=timeout)
    except Unreachable:
        _remove_stale_socket(paths)
        return
    if answer.get("quitting"):
        wait_gone(paths, timeout)


def shutdown(paths: StatePaths, *, timeout: float = STOP_JOIN) -> None:
    """Stop every tunnel the resident supervisor runs, and the supervisor itself."""
    try:
        request(paths, {"op": "quit", "only_if_idle": False}, timeout=timeout)
    except Unreachable:
        _remove_stale_socket(paths)
        return
    wait_gone(paths, timeout)


def wait_gone(paths: StatePaths, timeout: float) -> None:
    """Wait until the supervisor's lock is free: it has exited (the kernel drops the lock)."""
    deadline = time.monotonic() + timeout
    from sshwrap.runtime.system.state import file_lock_is_free

    while not file_lock_is_free(lock_path(paths)):
        if time.monotonic() >= deadline:
            raise StateConflict("the resident supervisor did not exit",
                                hint=f"see {log_path(paths)}")
        time.sleep(0.01)


def _remove_stale_socket(paths: StatePaths) -> None:
    """The socket an engine killed with SIGKILL left behind, once no engine holds the lock."""
    from sshwrap.runtime.system.state import file_lock_is_free

    if has_run(paths) and file_lock_is_free(lock_path(paths)):
        with contextlib.suppress(OSError, StateConflict):
            socket_path(paths).unlink()
