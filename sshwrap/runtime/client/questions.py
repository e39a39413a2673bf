"""Second-factor questions (keyboard-interactive): asked on the asker's terminal, relayed there.

A server may ask, after the key or the password, a question only a person can answer (a
one-time code, a push confirmation). ssh hands it to sshwrap's askpass helper like a password
prompt (runtime/client/auth.py classifies it as a question). Whoever starts the client answers it:
the command line on its terminal, a program through its ``prompt=`` callback. When the engine
starts the client for a command, that command serves a private unix socket (this module's
``terminal_questions``; its path travels in the request's environment as PROMPT_ENV, never to
ssh) and the engine relays each question there (``relayed``), in askpass's wire format.
Nobody to ask (a script, a unit, a restart): the question is refused and the start fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sshwrap import askpass
from sshwrap.errors import InvalidInput

# Loaded up front: when the server is out of descriptors, an import could not open its file.
from sshwrap.runtime.system.sockets import bind_private, peer_is_same_user
from sshwrap.runtime.system.wire import Backoff, read_line

#: The environment variable of a start request naming the asker's question socket.
PROMPT_ENV = "SSHWRAP_PROMPT_SOCKET"
#: How long a question may wait for its answer (a person reads a code from a phone).
ANSWER_TIMEOUT = askpass.TIMEOUT

#: Answers a question as ssh words it ("(user@host) Verification code: "); None refuses it.
AskQuestion = Callable[[str], "str | None"]


#: For one connection to send its prompt: then the next one's turn.
PROMPT_DEADLINE = 5.0
#: The longest question shown whole: a longer one keeps its start and its end (the question).
QUESTION_LIMIT = 300

class AskSocket:
    """A private unix socket speaking askpass's wire format: a question as one line in, the
    answer (``A`` + text) or a refusal (``R``) out, from ``reply``. It lives in a fresh 0700
    folder under ``root``; only processes of this user are answered (SO_PEERCRED); one
    connection at a time, so questions are asked one after the other."""

    def __init__(self, reply: Callable[[str], bytes], root: Path | None,
                 done: Callable[[], bool] = lambda: False) -> None:
        self.reply = reply
        self.root = root
        self.done = done
        self.folder: Path | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def path(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the socket is not started")
        return self.folder / "askpass.sock"

    def start(self) -> AskSocket:
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="askpass-", dir=self.root))  # 0700
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bind_private(sock, self.path)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="askpass", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        backoff = Backoff(lambda _said: None)  # out of descriptors: askpass waits, we go on
        while not self._stop.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError as error:
                if self._stop.is_set() or self._sock is not sock:
                    return  # closed under us: done
                backoff.failed(error)
                continue
            backoff.succeeded()
            with conn:
                self._answer(conn)
            if self.done():
                self.close_socket()
                return

    def _answer(self, conn: socket.socket) -> None:
        try:
            if not peer_is_same_user(conn):
                return
            prompt = read_line(conn, PROMPT_DEADLINE, limit=8192)
            answer = self.reply(prompt.decode("utf-8", "replace").strip())  # may ask a person
            conn.settimeout(PROMPT_DEADLINE)
            conn.sendall(answer)
        except (OSError, InvalidInput):  # gone, or no prompt in time
            return

    def close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self.folder is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def close(self) -> None:
        """Stop answering and remove the socket and its folder (with what else is in it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
        self.close_socket()
        if self.folder is not None:
            for entry in self.folder.iterdir() if self.folder.exists() else ():
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            with contextlib.suppress(OSError):
                self.folder.rmdir()


class TimedAsk:
    """Asks a person through ``ask``, and keeps how long they took (a start's deadline does
    not count it). A question given up on (None, or ``ask`` raised) is refused."""

    def __init__(self, ask: AskQuestion) -> None:
        self.ask = ask
        self._spent = 0.0
        self._since: float | None = None

    def __call__(self, prompt: str) -> str | None:
        self._since = time.monotonic()
        try:
            answer = self.ask(prompt)
        except Exception:  # a callback that raises gives up: the question is refused
            return None
        finally:
            self._spent += time.monotonic() - self._since
            self._since = None
        return None if answer is None or "\n" in answer or "\0" in answer else answer

    def elapsed(self) -> float:
        since = self._since
        return self._spent + (time.monotonic() - since if since is not None else 0.0)


def note_unasked(log_path: Path) -> None:
    """Say in the tunnel's log that a question found nobody to answer it (the diagnosis
    reads it; the question's own text is never written by sshwrap)."""
    from sshwrap.core.diagnose.patterns import NOBODY_TO_ASK

    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(NOBODY_TO_ASK + "\n")


def relayed(path: str, tunnel: str) -> AskQuestion:
    """The engine's side of the relay: asks each question of ``tunnel`` at the socket
    ``path`` of the command that asked for the start; None when it is gone or refuses."""

    def ask(prompt: str) -> str | None:
        try:
            answer = askpass.ask(path, f"{tunnel}: {prompt}", timeout=ANSWER_TIMEOUT)
        except OSError:
            return None
        return None if answer is None else answer.decode("utf-8", "replace")

    return ask


def relay_of(env: Mapping[str, str] | None, tunnel: str) -> AskQuestion | None:
    """The relay to the asker's terminal named in a start's environment, if it has one."""
    path = (env or {}).get(PROMPT_ENV, "")
    return relayed(path, tunnel) if path else None


def shown_question(text: str) -> str:
    """A server's question as a terminal may show it: every hidden character escaped, and
    cut in the middle past QUESTION_LIMIT characters, saying how much was left out."""
    from sshwrap.textsafe import escaped, shortened

    return shortened(escaped(text).rstrip(), QUESTION_LIMIT)


class TerminalPrompter:
    """Asks questions on the controlling terminal, one at a time, the answer unechoed; the
    question is server text, shown with every control character escaped and cut short
    (``shown_question``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saved: list[Any] | None = None
        with contextlib.suppress(ImportError, OSError, ValueError):
            import termios

            self._saved = termios.tcgetattr(sys.stdin.fileno())

    def __call__(self, text: str) -> str | None:
        import getpass

        with self._lock:
            try:
                answer = getpass.getpass(f"{shown_question(text)} ")
            except (EOFError, OSError):
                return None
        return answer

    def restore(self) -> None:
        """Give the terminal back as it was (echo on), even if a question was cut short."""
        if self._saved is None:
            return
        with contextlib.suppress(ImportError, OSError, ValueError):
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)


def answer_bytes(answer: str | None) -> bytes:
    """An answer in askpass's wire format."""
    if answer is None:
        return askpass.REFUSED
    return askpass.ANSWER + answer.encode()


def has_terminal() -> bool:
    """True when a person can be asked: stdin is a terminal."""
    with contextlib.suppress(ValueError, OSError):
        return sys.stdin.isatty()
    return False


@contextlib.contextmanager
def terminal_questions(state_root: str | Path) -> Iterator[str | None]:
    """While open, the engine's starts for this command ask their questions on its terminal:
    the socket's path is in ``os.environ`` (PROMPT_ENV), which every request carries. Without
    a terminal it does nothing (None): questions are refused and such starts fail fast."""
    if not has_terminal():
        yield None
        return
    from sshwrap.runtime.system.paths import StatePaths

    root = Path(state_root)
    prompter = TerminalPrompter()
    server = AskSocket(lambda text: answer_bytes(prompter(text)),
                       StatePaths(root).folder(root / "askpass")).start()
    before = os.environ.get(PROMPT_ENV)
    os.environ[PROMPT_ENV] = str(server.path)
    try:
        yield str(server.path)
    finally:
        if before is None:
            os.environ.pop(PROMPT_ENV, None)
        else:
            os.environ[PROMPT_ENV] = before
        server.close()
        prompter.restore()
