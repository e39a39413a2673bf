"""What crosses the engine's socket: requests and answers as JSON lines, each within its
time; errors as data, raised again as themselves on the other side (and read back from a
record)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sshwrap import errors
from sshwrap.errors import ExitCode, InvalidInput, Problem, SshwrapError
from sshwrap.runtime.system.protocol import MAX_REQUEST, bad_request
from sshwrap.runtime.system.sockets import bind_private

if TYPE_CHECKING:
    from pathlib import Path

#: Every error kind by name, so that the other side raises the very class that was raised.
KINDS: dict[str, type[SshwrapError]] = {
    cls.__name__: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, SshwrapError)
}
#: The kind a bare exit code stands for, when no kind was written (records of older sshwraps).
KIND_OF_CODE: dict[int, type[SshwrapError]] = {
    int(ExitCode.BAD_INPUT): errors.InvalidInput,
    int(ExitCode.MISSING_BINARY): errors.MissingBinary,
    int(ExitCode.AUTH): errors.AuthFailed, int(ExitCode.FORWARDING): errors.ForwardingFailed,
    int(ExitCode.CONNECTION): errors.ConnectionFailed, int(ExitCode.NOT_READY): errors.NotReady,
    int(ExitCode.UNHEALTHY): errors.Unhealthy,
}


def error_data(error: SshwrapError) -> dict[str, Any]:
    """An error as plain JSON values: kind, exit code, message, hint (and each problem)."""
    data: dict[str, Any] = {"kind": type(error).__name__, "exit_code": int(error.exit_code),
                            "message": error.message, "hint": error.hint}
    if isinstance(error, InvalidInput):
        data["problems"] = [vars(p) for p in error.problems]
    return data


def error_from_data(data: Mapping[str, Any]) -> SshwrapError:
    """The error ``error_data`` described, of the same class; an unknown kind falls back on
    the class of its exit code, so the code and the words are kept either way."""
    code = int(data.get("exit_code", ExitCode.INTERNAL))
    kind = KINDS.get(str(data.get("kind"))) or KIND_OF_CODE.get(code, SshwrapError)
    message, hint = str(data.get("message", "")), str(data.get("hint") or "")
    if issubclass(kind, InvalidInput):
        problems = [Problem(str(p.get("message", "")), key=str(p.get("key", "")),
                            file=str(p.get("file", "")))
                    for p in data.get("problems") or () if isinstance(p, Mapping)]
        return kind(problems or message, hint=hint)
    return kind(message, hint=hint)


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


#: How long a connection may take to send its request: an idle one is cut off after it.
REQUEST_DEADLINE = 5.0
#: How long a reply may wait for its asker to read it.
REPLY_TIMEOUT = 60.0
#: How often the accept loop looks at the idle time, a reload asked, the quit flag.
ACCEPT_POLL = 0.5
#: The most connections served at once; fewer under a low limit of open files, so that the
#: tunnels keep the descriptors their restarts need.
MAX_CONNECTIONS = 64


def connection_slots() -> int:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // 4))


class Backoff:
    """After a failed accept (out of descriptors, threads or memory), a growing pause before
    the next one, so the loop neither spins nor dies; said once per run of failures."""

    FIRST, LAST = 0.05, 1.0

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.pause = 0.0
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        if self.failures == 0:
            self.say(f"cannot take a request ({error}): serving on, slower")
        self.failures += 1
        self.pause = min(self.LAST, self.pause * 2 or self.FIRST)
        time.sleep(self.pause)

    def succeeded(self) -> None:
        if self.failures:
            self.say(f"taking requests again after {self.failures} failed accept(s)")
        self.failures, self.pause = 0, 0.0


def read_line(conn: socket.socket, seconds: float, limit: int = MAX_REQUEST) -> bytes:
    """One line from ``conn`` within ``seconds`` in all; InvalidInput when none comes in time,
    the asker stops half-way, or it is longer than ``limit``."""
    data, deadline = bytearray(), time.monotonic() + seconds
    while len(data) <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise bad_request(f"no request within {seconds:g} s")
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(1 << 16)
        except TimeoutError:
            continue
        end = chunk.find(b"\n")
        if end >= 0:
            data += chunk[:end + 1]
            if len(data) <= limit:
                return bytes(data)
        elif not chunk:
            raise bad_request("the request ended before its end of line")
        else:
            data += chunk
    raise bad_request(f"the request is longer than {limit} bytes")


def serve_connections(listener: socket.socket, handle: Callable[[socket.socket], None], *,
                      keep_on: Callable[[], bool], say: Callable[[str], None]) -> None:
    """Accept connections on ``listener`` while ``keep_on()`` (asked between them), each
    handled in a thread of its own. Each holds a descriptor and a thread: past
    ``connection_slots()`` of them, the next askers wait in the listen backlog (their clients
    wait out a full one). A failed accept is backed off, never the end of serving."""
    listener.settimeout(ACCEPT_POLL)
    slots = threading.BoundedSemaphore(connection_slots())
    backoff = Backoff(say)

    def run(conn: socket.socket) -> None:
        try:
            handle(conn)
        finally:
            slots.release()

    while keep_on():
        if not slots.acquire(timeout=ACCEPT_POLL):
            continue
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            slots.release()
            continue
        except OSError as error:  # out of descriptors or memory: wait, and serve on
            slots.release()
            backoff.failed(error)
            continue
        backoff.succeeded()
        try:
            threading.Thread(target=run, args=(conn,), name="request", daemon=True).start()
        except RuntimeError as error:  # no thread to be had: as out of descriptors
            conn.close()
            slots.release()
            backoff.failed(error)


#: How much of a refused request is read and dropped after the answer, at most.
DISCARD = 4 * MAX_REQUEST


def hang_up(conn: socket.socket) -> None:
    """End a connection whose request was refused, so that the asker reads the answer: what
    it still sends is read and dropped for a moment (closing with it unread would reset the
    connection, and the answer with it)."""
    conn.shutdown(socket.SHUT_WR)
    deadline, dropped = time.monotonic() + 1.0, 0
    while dropped < DISCARD and (remaining := deadline - time.monotonic()) > 0:
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(1 << 16)
        except OSError:
            return
        if not chunk:
            return
        dropped += len(chunk)


def listen_on(path: Path) -> socket.socket:
    """The engine's socket at ``path``, 0600, listening (the caller holds the engine lock)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead predecessor's: we hold the lock, so nobody else serves it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bind_private(listener, path)  # in the state dir, which only this user can enter
    listener.listen(64)
    return listener
