"""What crosses the engine's socket: answers as JSON lines, and errors as data, raised again
as themselves on the other side (and read back from a record)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from typing import Any

from sshwrap import errors
from sshwrap.errors import ExitCode, InvalidInput, Problem, SshwrapError

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
