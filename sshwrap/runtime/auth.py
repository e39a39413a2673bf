"""Deliver a password or key passphrase to ssh or plink without it touching argv, env or disk.

ssh gets it through an askpass program sshwrap controls: ssh runs the program with the prompt
as its argument, the program asks a private unix socket served by the process that holds the
secret, prints the answer and exits. The server answers each prompt at most once, refuses
prompts of the wrong kind, says "no" to every host-key question, and removes its socket once
it has answered what it may. plink reads it with ``-pwfile`` from a pipe, so it is never a file.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sshwrap import askpass
from sshwrap.core.model import AuthMethod, Client, Profile
from sshwrap.errors import InvalidInput, Problem
from sshwrap.runtime.sockets import peer_is_same_user
from sshwrap.runtime.wire import Backoff, read_line

if TYPE_CHECKING:
    from sshwrap.runtime.launch import Launched

#: Variables the client must not get: the ones naming sshwrap's secrets are dropped too.
ASKPASS_ENV = ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", askpass.SOCKET_ENV)
ACCEPT_TIMEOUT = 0.2
PROMPT_DEADLINE = 5.0  # for one connection to send its prompt: then the next one's turn


class PromptKind(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a kind of prompt, not a secret
    PASSPHRASE = "passphrase"  # noqa: S105
    HOST_KEY = "host-key"
    OTHER = "other"


def classify_prompt(prompt: str) -> PromptKind:
    """What ssh asks for, from the prompt text it passes to askpass."""
    lowered = prompt.lower()
    if "continue connecting" in lowered or "fingerprint" in lowered:
        return PromptKind.HOST_KEY
    if "passphrase" in lowered:
        return PromptKind.PASSPHRASE
    if lowered.rstrip().endswith("password:") or "password for" in lowered:
        return PromptKind.PASSWORD
    return PromptKind.OTHER


def secret_kind(profile: Profile) -> PromptKind:
    """The only kind of prompt a profile's secret may answer."""
    return PromptKind.PASSWORD if profile.auth is AuthMethod.PASSWORD else PromptKind.PASSPHRASE


def max_prompts(profile: Profile) -> int:
    """At most one prompt per hop: a wrong password is never retried."""
    return 1 + len(profile.jump)


@dataclass
class SecretServer:
    """Answers askpass prompts of one kind with ``secret`` over a private unix socket.

    Use as a context manager: the socket lives in a fresh 0700 directory under ``root``
    and is removed on exit, or as soon as ``max_answers`` prompts have been answered.
    Only processes of the same user may connect (checked with SO_PEERCRED).
    """

    secret: str
    max_answers: int = 1
    kind: PromptKind = PromptKind.PASSWORD
    root: Path | None = None
    answered: list[str] = field(default_factory=list, init=False)
    refused: list[str] = field(default_factory=list, init=False)
    _dir: Path | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the secret server is not started")
        return self._dir / "askpass.sock"

    @property
    def program(self) -> Path:
        """The askpass program ssh runs (a two-line shell script next to the socket)."""
        if self._dir is None:
            raise RuntimeError("the secret server is not started")
        return self._dir / "askpass"

    def start(self) -> SecretServer:
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        import tempfile  # only with a secret to serve
        self._dir = Path(tempfile.mkdtemp(prefix="askpass-", dir=self.root))  # 0700
        script = (f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S "
                  f"{shlex.quote(askpass.__file__)} \"$@\"\n")
        fd = os.open(self.program, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w") as handle:
            handle.write(script)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600
        try:
            sock.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        sock.listen(8)
        sock.settimeout(ACCEPT_TIMEOUT)
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
            if len(self.answered) >= self.max_answers:
                self._close_socket()
                return

    def _answer(self, conn: socket.socket) -> None:
        try:
            if not peer_is_same_user(conn):
                return
            prompt = read_line(conn, PROMPT_DEADLINE, limit=8192).decode("utf-8", "replace").strip()
            kind = classify_prompt(prompt)
            with self._lock:
                if kind is PromptKind.HOST_KEY:
                    # A host key is never accepted by prompt: trust it with 'sshwrap trust'.
                    self.refused.append(prompt)
                    conn.sendall(askpass.ANSWER + b"no")
                    return
                if kind is not self.kind or prompt in self.answered \
                        or len(self.answered) >= self.max_answers:
                    self.refused.append(prompt)
                    conn.sendall(askpass.REFUSED)
                    return
                self.answered.append(prompt)
            conn.sendall(askpass.ANSWER + self.secret.encode())
        except (OSError, InvalidInput):  # gone, or no prompt in time
            return

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
        self._close_socket()
        if self._dir is not None:
            with contextlib.suppress(FileNotFoundError):
                self.program.unlink()
            with contextlib.suppress(OSError):
                self._dir.rmdir()

    def __enter__(self) -> SecretServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def askpass_env(server: SecretServer) -> dict[str, str]:
    """What ssh's environment needs so that its prompts go to ``server`` (no secret in it)."""
    return {
        "SSH_ASKPASS": str(server.program),
        "SSH_ASKPASS_REQUIRE": "force",  # askpass even without DISPLAY or with a terminal
        askpass.SOCKET_ENV: str(server.socket_path),
    }


def client_env(profile: Profile, extra: Mapping[str, str] | None = None, *,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The client's environment: ours without the profile's password variable, plus ``extra``."""
    env = dict(os.environ if base is None else base)
    if profile.password_env:
        env.pop(profile.password_env, None)
    for name in ASKPASS_ENV:
        env.pop(name, None)
    env.update(extra or {})
    return env


AskSecret = Callable[[Profile], "str | None"]


def secret_for(profile: Profile, ask: AskSecret | None = None,
               environ: Mapping[str, str] | None = None) -> str | None:
    """The secret to answer the profile's prompts with, or None (key auth, agent or no prompt).

    ``ask`` (e.g. hidden terminal input) wins over ``password_env`` and ``password_keyring``.
    A password profile without any secret is bad input: nothing is started.
    """
    environ = os.environ if environ is None else environ
    secret = ask(profile) if ask is not None else None
    if secret is None and profile.password_env:
        secret = environ.get(profile.password_env)
    if secret is None and profile.password_keyring:
        from sshwrap.runtime.keyring_secret import keyring_password

        secret = keyring_password(profile.name, profile.source or profile.name)
    if secret is not None and ("\n" in secret or "\0" in secret):
        raise InvalidInput(Problem("the secret contains a line break or NUL byte",
                                   key="password_env", file=profile.source or profile.name))
    if profile.auth is AuthMethod.PASSWORD and not secret:
        where = (f"${profile.password_env} is not set" if profile.password_env
                 else "no password_env is set")
        raise InvalidInput(
            Problem(f"auth = \"password\" but {where}", key="auth",
                    file=profile.source or profile.name),
            hint="export the variable named by password_env, or run 'sshwrap up --ask-password'")
    return secret or None


def prompt_options(profile: Profile) -> list[tuple[str, str]]:
    """ssh options used instead of BatchMode when sshwrap answers the prompts itself."""
    options = [("NumberOfPasswordPrompts", "1")]
    if profile.auth is AuthMethod.PASSWORD:
        options.append(("PasswordAuthentication", "yes"))
    else:
        # A passphrase must never be sent to a server as a password.
        options += [("PasswordAuthentication", "no"), ("KbdInteractiveAuthentication", "no")]
    return options


def ssh_prompt_args(profile: Profile) -> list[str]:
    """``prompt_options`` as ``-o`` arguments (they bind the tunnel host only)."""
    return [arg for name, value in prompt_options(profile) for arg in ("-o", f"{name}={value}")]


def hop_options(profile: Profile, *, answers_prompts: bool) -> list[tuple[str, str]]:
    """What every hop needs, jump hosts included: the host-key policy and batch mode, or the
    one-prompt-per-hop settings when sshwrap answers the prompts.

    A pinned key binds the tunnel host only (see ``hostkeys.pinned_args``): its jump hosts
    are checked strictly against the user's known_hosts.
    """
    from sshwrap.core.compile import strict_host_key_checking

    options = [("StrictHostKeyChecking", strict_host_key_checking(profile))]
    if answers_prompts:
        options += prompt_options(profile)
    else:
        options.append(("BatchMode", "yes"))
    return options


def without_batch_mode(argv: list[str]) -> list[str]:
    """``argv`` with the runtime's ``-o BatchMode=yes`` removed (it would disable askpass)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "-o" and i + 1 < len(argv) and argv[i + 1] == "BatchMode=yes":
            skip = True
            continue
        out.append(arg)
    return out


def insert_before_host(argv: list[str], args: list[str], client: Client) -> list[str]:
    """``argv`` with the runtime's ``args`` right after sshwrap's own leading ``-o`` options,
    before anything from the profile (ssh keeps the first value it sees, so the profile cannot
    override a pinned known_hosts file or one password prompt); for plink, before the host."""
    if client is not Client.SSH:
        at = len(argv) - 1
        return [*argv[:at], *args, *argv[at:]]
    at = 2 if argv[1:2] == ["-N"] else 1
    while at + 1 < len(argv) and argv[at] == "-o":
        at += 2
    return [*argv[:at], *args, *argv[at:]]


@dataclass
class PreparedLaunch:
    """The argv, environment and inherited descriptors one client start needs."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    server: SecretServer | None = None


@contextlib.contextmanager
def prepared_launch(profile: Profile, argv: list[str], secret: str | None, *,
                    state_root: Path,
                    base_env: Mapping[str, str] | None = None) -> Iterator[PreparedLaunch]:
    """Everything around ``argv`` that sshwrap adds to answer prompts and check host keys.

    Keep the context open until the tunnel is verified: the askpass socket and the password
    pipe exist only inside it. ``base_env`` is the environment to start from (default: ours).
    """
    from sshwrap.runtime import hostkeys
    from sshwrap.runtime.launch import with_config_file, write_client_config

    argv = list(argv)
    extra_env: dict[str, str] = {}
    if profile.client is Client.PLINK:
        extra_env["PUTTYDIR"] = str(hostkeys.putty_dir(state_root))
        argv = hostkeys.with_hop_host_keys(profile, argv)
    else:
        pin_args = hostkeys.pinned_args(profile, state_root)
        if pin_args:
            argv = insert_before_host(argv, pin_args, profile.client)
        # ssh passes -F, and only -F, on to the jump hosts: their options live in that file.
        config = write_client_config(profile, state_root,
                                     hop_options(profile, answers_prompts=secret is not None))
        argv = with_config_file(argv, config)
    if secret is None:
        yield PreparedLaunch(argv, client_env(profile, extra_env, base=base_env))
        return
    if profile.client is Client.PLINK:
        read_end, write_end = os.pipe()
        try:
            with os.fdopen(write_end, "wb") as writer:
                writer.write(secret.encode() + b"\n")  # far below the pipe's buffer size
            argv = insert_before_host(argv, ["-pwfile", f"/dev/fd/{read_end}"], profile.client)
            yield PreparedLaunch(argv, client_env(profile, extra_env, base=base_env),
                                 pass_fds=(read_end,))
        finally:
            os.close(read_end)
        return
    argv = insert_before_host(without_batch_mode(argv), ssh_prompt_args(profile), profile.client)
    with SecretServer(secret, max_prompts(profile), secret_kind(profile),
                      root=state_root / "askpass") as server:
        extra_env.update(askpass_env(server))
        yield PreparedLaunch(argv, client_env(profile, extra_env, base=base_env), server=server)


class ClientStarter:
    """Starts a profile's client again and again (a supervisor's restarts) with one secret.

    ``start`` opens the launch context (askpass socket, password pipe, pinned key) and
    spawns; ``settle`` closes it once the client is verified or has failed. A new ``start``
    settles the previous one first, and the askpass socket closes itself after its answers.
    """

    def __init__(self, profile: Profile, secret: str | None, state_root: Path, *,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.profile = profile
        self._secret = secret
        self.state_root = state_root
        self.base_env = base_env
        self._context: contextlib.AbstractContextManager[PreparedLaunch] | None = None

    def start(self, name: str, argv: list[str], log_path: Path,
              **spawn_options: Any) -> Launched:
        from sshwrap.runtime.launch import spawn

        self.settle()
        context = prepared_launch(self.profile, argv, self._secret, state_root=self.state_root,
                                  base_env=self.base_env)
        prepared = context.__enter__()
        self._context = context
        try:
            return spawn(name, prepared.argv, log_path, env=prepared.env,
                         pass_fds=prepared.pass_fds, **spawn_options)
        except BaseException:
            self.settle()
            raise

    def settle(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(None, None, None)
