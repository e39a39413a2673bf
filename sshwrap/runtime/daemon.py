"""The resident supervisor: one process per state dir supervises every tunnel, each in a thread.

``up`` asks it to start a tunnel and gets the first attempt's result; ``down`` asks it to stop
one. It is started on demand and ends once it has supervised nothing for ``IDLE_EXIT``
seconds, or on ``down --all``. Shared-connection tunnels and systemd units keep a supervisor
process of their own (runtime/supervisor.py). Whoever starts it may add commands it serves
over the same socket with a stream of answers (the express lane of ``up``, cli/express.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sshwrap.errors import StateConflict
from sshwrap.runtime.paths import STATE_DIR_ENV, StatePaths
from sshwrap.runtime.rendezvous import SUPERVISOR_SOCKET

if TYPE_CHECKING:
    from sshwrap.runtime.supervisor import Supervisor

MODULE = "sshwrap.runtime.daemon"
#: With no tunnel to supervise for this long, the resident supervisor exits.
IDLE_EXIT = 300.0
#: How long ``up`` waits for a resident supervisor it started to answer.
START_TIMEOUT = 10.0
#: How long a stopping tunnel's thread may take (its client's SIGTERM, then SIGKILL).
STOP_JOIN = 15.0
MAX_REQUEST = 1 << 20


def socket_path(paths: StatePaths) -> Path:
    """Where it listens: in the private socket dir, short enough for a unix socket path."""
    from sshwrap.runtime.shared import control_dir

    return control_dir(paths) / SUPERVISOR_SOCKET


def lock_path(paths: StatePaths) -> Path:
    return paths.root / "supervisor.lock"


def log_path(paths: StatePaths) -> Path:
    """Its own messages (tunnels' messages go to their logs); outside logs/, where a tunnel
    could be named ``supervisor``."""
    return paths.root / "supervisor.log"


def is_resident(argv: Sequence[str]) -> bool:
    """True when a record's supervisor command line is the resident supervisor's."""
    return MODULE in argv


# -- the client side: up and down ---------------------------------------------------------


class Unreachable(OSError):
    """No resident supervisor answers on this state dir's socket."""


def request(paths: StatePaths, message: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    """Send one request and return its answer; Unreachable when nothing listens."""
    if not paths.root.is_dir():
        raise Unreachable(f"no state directory {paths.root}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(socket_path(paths)))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise Unreachable(str(error)) from None
        conn.sendall(json.dumps(message).encode() + b"\n")
        with conn.makefile("rb") as reader:
            line = reader.readline(MAX_REQUEST)
    if not line:
        raise Unreachable("the resident supervisor closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


def start_request(paths: StatePaths, message: Mapping[str, Any], *,
                  timeout: float) -> dict[str, Any]:
    """Ask the resident supervisor of ``paths`` to start a tunnel (``op: start``), starting
    the supervisor first if none runs; served in-process when called from inside it (the
    express lane of ``up``)."""
    resident = _serving_here
    if resident is not None and resident.paths.root == paths.root:
        return resident.start(dict(message))
    ensure_running(paths, message["env"])
    return request(paths, message, timeout=timeout)


def ensure_running(paths: StatePaths, env: Mapping[str, str]) -> None:
    """Start the resident supervisor of ``paths`` unless one answers already.

    Two ``up`` racing here may both start one: the second finds the lock taken and exits,
    and both talk to the first.
    """
    try:
        request(paths, {"op": "ping"}, timeout=START_TIMEOUT)
        return
    except Unreachable:
        pass
    log = log_path(paths)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True, close_fds=True,
            env={**env, STATE_DIR_ENV: os.path.abspath(paths.root)})
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            request(paths, {"op": "ping"}, timeout=START_TIMEOUT)
            return
        except Unreachable:
            pass
        exited = process.poll() is not None
        if (exited and process.returncode != 0) or time.monotonic() >= deadline:
            if not exited:
                process.kill()
                process.wait()
            raise StateConflict(
                f"the resident supervisor did not start (status {process.returncode})",
                hint=f"see {log}")
        time.sleep(0.005)


def stop_if_idle(paths: StatePaths, *, timeout: float = STOP_JOIN) -> None:
    """Ask the resident supervisor to exit if it supervises nothing (``down --all``), and
    wait until it has; nothing happens when none runs."""
    try:
        answer = request(paths, {"op": "quit", "only_if_idle": True}, timeout=timeout)
    except Unreachable:
        return
    if answer.get("quitting"):
        wait_gone(paths, timeout)


def shutdown(paths: StatePaths, *, timeout: float = STOP_JOIN) -> None:
    """Stop every tunnel the resident supervisor runs, and the supervisor itself."""
    try:
        request(paths, {"op": "quit", "only_if_idle": False}, timeout=timeout)
    except Unreachable:
        return
    wait_gone(paths, timeout)


def wait_gone(paths: StatePaths, timeout: float) -> None:
    """Wait until the supervisor's lock is free: it has exited (the kernel drops the lock)."""
    deadline = time.monotonic() + timeout
    from sshwrap.runtime.state import file_lock_is_free

    while not file_lock_is_free(lock_path(paths)):
        if time.monotonic() >= deadline:
            raise StateConflict("the resident supervisor did not exit",
                                hint=f"see {log_path(paths)}")
        time.sleep(0.01)


# -- the resident supervisor ----------------------------------------------------------------


@dataclass
class Tunnel:
    supervisor: Supervisor
    thread: threading.Thread


class Channel:
    """One request's connection: answers go out as JSON lines, and the asker may hang up."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, frame: Mapping[str, Any]) -> None:
        """Send one answer; OSError when the asker is gone."""
        with self._lock:
            self._conn.sendall(json.dumps(frame).encode() + b"\n")

    def hung_up(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Wait up to ``timeout`` seconds, or until ``wake_fd`` is readable; True once the
        asker has closed its end."""
        import select

        poller = select.poll()
        poller.register(self._conn, select.POLLIN | select.POLLHUP | select.POLLERR)
        if wake_fd is not None:
            poller.register(wake_fd, select.POLLIN)
        ready = {fd for fd, _events in poller.poll(timeout * 1000)}
        if self._conn.fileno() not in ready:
            return False
        try:
            return self._conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


#: A command served with a stream of answers: the request, its channel, the supervisor.
Command = Callable[[dict[str, Any], Channel, "ResidentSupervisor"], None]
#: The resident supervisor serving in this process, if any.
_serving_here: ResidentSupervisor | None = None


class ResidentSupervisor:
    """Accepts requests on the socket; runs each tunnel's Supervisor in a thread of its own."""

    def __init__(self, paths: StatePaths, commands: Mapping[str, Command] | None = None) -> None:
        from sshwrap.runtime.supervisor import process_identity

        self.paths = paths
        self.commands = dict(commands or {})
        self.identity = process_identity()
        self.tunnels: dict[str, Tunnel] = {}
        self.lock = threading.Lock()
        self.quit = threading.Event()
        self.idle_since = time.monotonic()
        self.serving = 0  # commands under way: not idle while one runs

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        sys.stderr.write(f"--- sshwrap resident supervisor {os.getpid()} {stamp}: {text}\n")
        sys.stderr.flush()

    def serve(self, listener: socket.socket) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.quit.set()

        global _serving_here  # noqa: PLW0603 - one resident supervisor per process
        _serving_here = self
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        listener.settimeout(0.5)
        self.say("serving")
        while not self.quit.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                with self.lock:
                    if not self.tunnels and not self.serving \
                            and time.monotonic() - self.idle_since >= IDLE_EXIT:
                        self.say(f"nothing supervised for {IDLE_EXIT:g} s: exiting")
                        break
                continue
            threading.Thread(target=self._handle, args=(conn,), name="request",
                             daemon=True).start()
        self._stop_all()
        self.say("exited")
        return 0

    # -- requests ---------------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        from sshwrap.runtime.sockets import peer_is_same_user

        with conn:
            try:
                if not peer_is_same_user(conn):
                    return
                with conn.makefile("rb") as reader:
                    line = reader.readline(MAX_REQUEST)
                message = json.loads(line)
                command = self.commands.get(str(message.get("op")))
                if command is not None:
                    self._serve(command, message, Channel(conn))
                    return
                answer = self._answer(message)
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except (OSError, ValueError) as error:
                self.say(f"a request failed: {type(error).__name__}")  # never its content

    def _serve(self, command: Command, message: dict[str, Any], channel: Channel) -> None:
        with self.lock:
            if self.quit.is_set():
                return  # the asker sees the connection close unanswered
            self.serving += 1
        try:
            command(message, channel, self)
        finally:
            with self.lock:
                self.serving -= 1
                self.idle_since = time.monotonic()

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "start":
            return self.start(message)
        if op == "stop":
            return {"stopped": self.stop(str(message["name"]))}
        if op == "quit":
            with self.lock:
                if message.get("only_if_idle") and self.tunnels:
                    return {"quitting": False}
                self.quit.set()
            return {"quitting": True}
        return {"error": f"unknown request {op!r}"}

    def start(self, message: dict[str, Any]) -> dict[str, Any]:
        """Start supervising a tunnel; the first attempt's exit code (0: verified) and, once
        verified, its forwards as found."""
        from queue import Queue

        from sshwrap.errors import ExitCode
        from sshwrap.runtime.supervisor import Supervisor
        from sshwrap.store import ProfileStore

        name = str(message["name"])
        with self.lock:
            previous = self.tunnels.get(name)
        if previous is not None:  # a stop of it is still under way: let it finish first
            previous.supervisor.request_stop()
            previous.thread.join(STOP_JOIN)
            if previous.thread.is_alive():
                return {"code": int(ExitCode.INTERNAL)}
        first: Queue[int] = Queue(maxsize=1)
        log = open(self.paths.log(name), "a", encoding="utf-8")  # noqa: SIM115 - the thread closes it
        supervisor = Supervisor(
            name, self.paths, ProfileStore(tuple(Path(d) for d in message["dirs"])),
            first_wait=float(message["wait"]), foreground=False, secret=message.get("secret"),
            log=log, env=dict(message["env"]), identity=self.identity,
            on_first_result=first.put)
        thread = threading.Thread(target=self._run, args=(name, supervisor, log),
                                  name=f"tunnel {name}", daemon=True)
        with self.lock:
            if self.quit.is_set():
                log.close()
                return {"code": int(ExitCode.INTERNAL)}
            self.tunnels[name] = Tunnel(supervisor, thread)
            # The client's parent-death signal follows this thread: it lives as long as the
            # tunnel does, and stops the client before it ends.
            thread.start()
        code = first.get()
        if code != 0:
            return {"code": code}
        return {"code": code, "forwards": [
            {"type": c.forward.type, "listen": c.forward.listen, "to": c.forward.to,
             "healthy": c.healthy, "detail": c.detail} for c in supervisor.ready_checks]}

    def _run(self, name: str, supervisor: Supervisor, log: Any) -> None:
        try:
            code = supervisor.run(handle_signals=False)
            self.say(f"{name}: supervision ended with status {code}")
        except Exception as error:  # one tunnel's bug must not end the others
            self.say(f"{name}: internal error: {type(error).__name__}: {error}")
            _record_failure(self.paths, name, f"internal error of its supervisor: {error}")
        finally:
            log.close()
            with self.lock:
                current = self.tunnels.get(name)
                if current is not None and current.supervisor is supervisor:
                    del self.tunnels[name]
                if not self.tunnels:
                    self.idle_since = time.monotonic()

    def stop(self, name: str) -> bool:
        """Stop one tunnel (its client ends, its record goes); False if it was not ours."""
        with self.lock:
            tunnel = self.tunnels.get(name)
        if tunnel is None:
            return False
        tunnel.supervisor.request_stop()
        tunnel.thread.join(STOP_JOIN)
        return not tunnel.thread.is_alive()

    def _stop_all(self) -> None:
        with self.lock:
            tunnels = list(self.tunnels.values())
        for tunnel in tunnels:
            tunnel.supervisor.request_stop()
        for tunnel in tunnels:
            tunnel.thread.join(STOP_JOIN)


def _record_failure(paths: StatePaths, name: str, reason: str) -> None:
    from dataclasses import replace

    from sshwrap.errors import ExitCode
    from sshwrap.runtime import state

    with contextlib.suppress(StateConflict, OSError):
        record = state.read_record(paths, name)
        if record is not None:
            state.write_record(paths, replace(record, phase="failed", last_failure=reason,
                                              failure_code=int(ExitCode.INTERNAL),
                                              verified=False))


def _listen(paths: StatePaths) -> socket.socket:
    path = socket_path(paths)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead predecessor's: we hold the lock, so nobody else serves it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(64)
    return listener


def main() -> int:
    with contextlib.suppress(OSError):
        os.umask(0o077)
    paths = StatePaths(StatePaths.from_env().root.absolute()).ensure()
    # Hold no caller's directory: nothing here may depend on where the first up ran.
    os.chdir("/")
    lock_fd = os.open(lock_path(paths), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another one serves this state dir
    listener = _listen(paths)
    try:
        # The composition root: the command line's express lane is served here too.
        from sshwrap.cli.express import serve_up

        return ResidentSupervisor(paths, {"up": serve_up}).serve(listener)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path(paths).unlink()
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())
