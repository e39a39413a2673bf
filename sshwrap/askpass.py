"""The askpass program ssh runs for a prompt: it asks sshwrap's socket and prints the answer.

It is started as ``python -I -S askpass.py PROMPT`` (stdlib only, no sshwrap import) so that
it starts fast and reads nothing from the environment but the socket's path.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys

SOCKET_ENV = "SSHWRAP_ASKPASS_SOCKET"
#: The largest answer accepted; a password or passphrase is far shorter.
MAX_ANSWER = 64 * 1024
#: The first byte of the server's reply.
ANSWER = b"A"
REFUSED = b"R"
#: How long an answer may take: a password comes at once, a one-time code from a person.
TIMEOUT = 300.0


def _same_user(conn: socket.socket) -> bool:
    """The server at the other end runs as this user (SO_PEERCRED: pid, uid, gid)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder) == os.geteuid()


def ask(socket_path: str, prompt: str, timeout: float = TIMEOUT) -> bytes | None:
    """The answer to ``prompt``, or None when sshwrap refuses to answer it (or the socket
    is served by another user)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        # Connected in blocking mode: a full listen backlog (the server answers one prompt
        # at a time) is waited out, where a timeout would refuse at once (EAGAIN); the alarm
        # ends this process if it never clears.
        signal.alarm(math.ceil(timeout))
        conn.connect(socket_path)
        signal.alarm(0)
        if not _same_user(conn):
            return None
        conn.settimeout(timeout)
        conn.sendall(prompt.encode("utf-8", "replace")[:4096] + b"\n")
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) <= MAX_ANSWER:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    if not reply.startswith(ANSWER):
        return None
    return reply[1:]


def main(argv: list[str]) -> int:
    socket_path = os.environ.get(SOCKET_ENV, "")
    prompt = argv[1] if len(argv) > 1 else ""
    if not socket_path:
        return 1
    try:
        answer = ask(socket_path, prompt)
    except OSError:
        return 1
    if answer is None:
        return 1
    sys.stdout.buffer.write(answer + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
