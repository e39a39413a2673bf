"""Deliver a password, passphrase or answer to ssh or plink without it touching argv, env or disk.

ssh gets it through an askpass program sshwrap controls, which asks a private unix socket served
by the process that holds the secret. Each prompt is answered at most once, prompts of the wrong
kind are refused, every host-key question gets "no". plink reads ``-pwfile`` from a pipe.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sshwrap import askpass
from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.spec import LaunchSpec, prompt_options
from sshwrap.core.model import AuthMethod, Client, Profile
from sshwrap.errors import InvalidInput, Problem
from sshwrap.runtime.client.questions import (
    AskQuestion,
    AskSocket,
    TimedAsk,
    answer_bytes,
    note_unasked,
    relay_of,
)
from sshwrap.runtime.system.paths import StatePaths

if TYPE_CHECKING:
    from sshwrap.runtime.client.launch import Launched

#: The askpass channel of a client: set by sshwrap for the client it serves, never passed on.
ASKPASS_ENV = ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", askpass.SOCKET_ENV)


class PromptKind(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a kind of prompt, not a secret
    PASSPHRASE = "passphrase"  # noqa: S105
    HOST_KEY = "host-key"
    #: A keyboard-interactive question that is not a password: a one-time code, a push.
    QUESTION = "question"
    OTHER = "other"


def is_server_question(prompt: str) -> bool:
    """ssh words every keyboard-interactive question as ``(user@host) TEXT``: the server's
    text, never ssh's own passphrase or host-key prompt (which never start so)."""
    return prompt.startswith("(")


def classify_prompt(prompt: str) -> PromptKind:
    """What ssh asks for, from the prompt text it passes to askpass. A server's question
    is a password or a question, never a passphrase or a host key, whatever its text."""
    lowered = prompt.lower()
    password = lowered.rstrip().endswith("password:") or "password for" in lowered
    if is_server_question(prompt):
        return PromptKind.PASSWORD if password else PromptKind.QUESTION
    if "continue connecting" in lowered or "fingerprint" in lowered:
        return PromptKind.HOST_KEY
    if "passphrase" in lowered:
        return PromptKind.PASSPHRASE
    if password:
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
    """Answers askpass prompts of one kind with ``secret`` over a private unix socket, and
    a server's questions (keyboard-interactive) through ``ask``, each at most once.

    Use as a context manager: the socket lives in a fresh 0700 directory under ``root`` (an
    existing folder, judged by the caller), removed on exit or, without ``ask``, once
    ``max_answers`` prompts have been answered. Only processes of the same user may connect
    (SO_PEERCRED). ``on_unasked`` is told when a question is refused for want of ``ask``.
    """

    secret: str | None
    max_answers: int = 1
    kind: PromptKind = PromptKind.PASSWORD
    root: Path | None = None
    ask: AskQuestion | None = None
    on_unasked: Callable[[], None] | None = None
    answered: list[str] = field(default_factory=list, init=False)
    refused: list[str] = field(default_factory=list, init=False)
    #: The questions asked through ``ask`` (answered or not), in order.
    asked: list[str] = field(default_factory=list, init=False)
    #: The questions whose answer went to ssh.
    questions_answered: list[str] = field(default_factory=list, init=False)
    _socket: AskSocket | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _timed: TimedAsk | None = field(default=None, init=False)

    @property
    def _dir(self) -> Path | None:
        return None if self._socket is None else self._socket.folder

    @property
    def socket_path(self) -> Path:
        if self._socket is None:
            raise RuntimeError("the secret server is not started")
        return self._socket.path

    @property
    def program(self) -> Path:
        """The askpass program ssh runs (a two-line shell script next to the socket)."""
        if self._dir is None:
            raise RuntimeError("the secret server is not started")
        return self._dir / "askpass"

    def asking_time(self) -> float:
        """Seconds spent waiting for a person's answers (a start's deadline excludes them)."""
        return self._timed.elapsed() if self._timed is not None else 0.0

    def start(self) -> SecretServer:
        from sshwrap.runtime.client.launch import keep_memory_private

        keep_memory_private()  # the secret lives in this process's memory from now on
        self._timed = TimedAsk(self.ask) if self.ask is not None else None
        self._socket = AskSocket(self._reply, self.root, done=self._done)
        self._socket.start()
        script = (f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S "
                  f"{shlex.quote(askpass.__file__)} \"$@\"\n")
        fd = os.open(self.program, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(fd, 0o700)  # runnable whatever the umask of the process that starts us
            handle.write(script)
        return self

    def _done(self) -> bool:
        return self.ask is None and len(self.answered) >= self.max_answers

    def _reply(self, prompt: str) -> bytes:
        kind = classify_prompt(prompt)
        with self._lock:
            if kind is PromptKind.HOST_KEY:
                # A host key is never accepted by prompt: trust it with 'sshwrap trust'.
                self.refused.append(prompt)
                return askpass.ANSWER + b"no"
            seen = prompt in self.answered or prompt in self.asked
            if kind is self.kind and self.secret is not None and not seen \
                    and len(self.answered) < self.max_answers:
                self.answered.append(prompt)
                return askpass.ANSWER + self.secret.encode()
            timed = self._timed
            if not is_server_question(prompt) or seen or timed is None:
                self.refused.append(prompt)
                if is_server_question(prompt) and timed is None \
                        and self.on_unasked is not None:
                    self.on_unasked()
                return askpass.REFUSED
            self.asked.append(prompt)
        answer = timed(prompt)
        (self.refused if answer is None else self.questions_answered).append(prompt)
        return answer_bytes(answer)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()

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
    """The client's environment: the allow-list (detach.CLIENT_ENVIRONMENT) of ``base``
    (default: ours), plus ``extra`` (its askpass channel, PUTTYDIR). No other profile's
    password variable can be among them (secret_for refuses those names), nor its own."""
    from sshwrap.runtime.system.detach import client_environment

    env = client_environment(base)
    if profile.password_env:
        env.pop(profile.password_env, None)
    env.update(extra or {})
    return env


def asker_env(profile: Profile, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a request to the engine carries for ``profile``: the asker's
    (default: ours) without the profile's password variable and askpass settings. The
    engine starts clients from it through ``client_env``, never as it is."""
    env = dict(os.environ if environ is None else environ)
    for name in (profile.password_env, *ASKPASS_ENV):
        if name:
            env.pop(name, None)
    return env


def _check_password_env(profile: Profile) -> None:
    """A password variable must not be one that sshwrap hands on to every process it starts."""
    from sshwrap.runtime.system.detach import CLIENT_ENVIRONMENT, ENGINE_ENVIRONMENT

    name = profile.password_env
    if name and name in CLIENT_ENVIRONMENT | ENGINE_ENVIRONMENT:
        raise InvalidInput(
            Problem(f"{name} is passed to every ssh client and engine sshwrap starts; it "
                    "cannot hold a password", key="password_env",
                    file=profile.source or profile.name),
            hint="name a variable that holds the password and nothing else")


AskSecret = Callable[[Profile], "str | None"]


def secret_for(profile: Profile, ask: AskSecret | None = None,
               environ: Mapping[str, str] | None = None) -> str | None:
    """The secret to answer the profile's prompts with, or None (key auth, agent or no prompt).

    ``ask`` (e.g. hidden terminal input) wins over ``password_env`` and ``password_keyring``.
    A password profile without any secret is bad input: nothing is started.
    """
    environ = os.environ if environ is None else environ
    _check_password_env(profile)
    secret = ask(profile) if ask is not None else None
    if secret is None and profile.password_env:
        secret = environ.get(profile.password_env)
    if secret is None and profile.password_keyring:
        from sshwrap.runtime.client.keyring_secret import keyring_password

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


def hop_options(profile: Profile, *, answers_prompts: bool,
                questions: bool = False) -> list[tuple[str, str]]:
    """What every hop needs, jump hosts included: the host-key policy and batch mode, or the
    one-prompt-per-hop settings when sshwrap answers the prompts (the client config's).

    A pinned key binds the tunnel host only (``LaunchSpec.pinned_known_hosts``): its jump
    hosts are checked strictly against the user's known_hosts.
    """
    from sshwrap.core.compile import strict_host_key_checking

    options = [("StrictHostKeyChecking", strict_host_key_checking(profile))]
    if answers_prompts:
        options += prompt_options(profile, questions=questions)
    else:
        options.append(("BatchMode", "yes"))
    return options


@dataclass
class PreparedLaunch:
    """The argv, environment and inherited descriptors one client start needs."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    server: SecretServer | None = None


@contextlib.contextmanager
def prepared_launch(profile: Profile, facts: HostFacts, secret: str | None, *,
                    state_root: Path, spec: LaunchSpec,
                    base_env: Mapping[str, str] | None = None,
                    ask: AskQuestion | None = None,
                    on_unasked: Callable[[], None] | None = None) -> Iterator[PreparedLaunch]:
    """One client start: what sshwrap adds to answer prompts and check host keys is found
    (pinned key fetched, client config written, password pipe and askpass socket opened)
    and put in the launch ``spec``, and the argv is compiled from it, once.

    ``ask`` answers the server's questions (keyboard-interactive: a one-time code); without
    it ssh runs in batch mode where it can (a key), and a question is refused at once.
    Keep the context open until the tunnel is verified: the askpass socket and the password
    pipe exist only inside it. ``base_env`` is the environment to start from (default: ours).
    """
    from sshwrap.runtime.client import hostkeys
    from sshwrap.runtime.client.launch import launch_argv, write_client_config

    extra_env: dict[str, str] = {}
    if profile.client is Client.PLINK:
        ask = None  # plink runs in batch mode: a question ends it at once (diagnosed)
    questions = ask is not None
    answers = secret is not None or questions
    spec = replace(spec, answers_prompts=answers, answers_questions=questions)
    if profile.client is Client.PLINK:
        extra_env["PUTTYDIR"] = str(hostkeys.putty_dir(state_root))
        spec = replace(spec, hop_host_keys=hostkeys.hop_host_keys(profile))
    else:
        pinned = hostkeys.pin_host_key(profile, state_root)
        # ssh passes -F, and only -F, on to the jump hosts: their options live in that file.
        config = write_client_config(profile, state_root,
                                     hop_options(profile, answers_prompts=answers,
                                                 questions=questions))
        spec = replace(spec, client_config=str(config),
                       pinned_known_hosts=None if pinned is None else str(pinned))
    if not answers:
        yield PreparedLaunch(launch_argv(profile, facts, spec),
                             client_env(profile, extra_env, base=base_env))
        return
    if profile.client is Client.PLINK and secret is not None:
        read_end, write_end = os.pipe()
        try:
            with os.fdopen(write_end, "wb") as writer:
                writer.write(secret.encode() + b"\n")  # far below the pipe's buffer size
            argv = launch_argv(profile, facts, replace(spec, password_file=f"/dev/fd/{read_end}"))
            yield PreparedLaunch(argv, client_env(profile, extra_env, base=base_env),
                                 pass_fds=(read_end,))
        finally:
            os.close(read_end)
        return
    argv = launch_argv(profile, facts, spec)
    with SecretServer(secret, max_prompts(profile), secret_kind(profile),
                      root=StatePaths(state_root).folder(state_root / "askpass"), ask=ask,
                      on_unasked=on_unasked) as server:
        extra_env.update(askpass_env(server))
        yield PreparedLaunch(argv, client_env(profile, extra_env, base=base_env), server=server)


class ClientStarter:
    """Starts a profile's client again and again (a supervisor's restarts) with one secret.

    ``start`` opens the launch context (askpass socket, password pipe, pinned key), compiles
    and spawns; ``settle`` closes it once the client is verified or has failed. A new
    ``start`` settles the previous one first, and the askpass socket closes itself after its
    answers. The server's questions are answered on the first start only (``ask``, or the
    asker's terminal in ``base_env``): a restart has nobody to ask, and fails at once.
    """

    def __init__(self, secret: str | None, state_root: Path, *,
                 base_env: Mapping[str, str] | None = None,
                 ask: AskQuestion | None = None) -> None:
        self._secret = secret
        self.state_root = state_root
        self.base_env = base_env
        self._ask = ask
        self._first = True
        self._context: contextlib.AbstractContextManager[PreparedLaunch] | None = None
        self._server: SecretServer | None = None

    def start(self, name: str, profile: Profile, facts: HostFacts, spec: LaunchSpec,
              log_path: Path, **spawn_options: Any) -> Launched:
        from sshwrap.runtime.client.launch import spawn

        self.settle()
        ask = (self._ask or relay_of(self.base_env, name)) if self._first else None
        self._first = False
        context = prepared_launch(profile, facts, self._secret, state_root=self.state_root,
                                  spec=spec, base_env=self.base_env, ask=ask,
                                  on_unasked=lambda: note_unasked(log_path))
        prepared = context.__enter__()
        self._context, self._server = context, prepared.server
        try:
            return spawn(name, prepared.argv, log_path, env=prepared.env,
                         pass_fds=prepared.pass_fds, **spawn_options)
        except BaseException:
            self.settle()
            raise

    def asking_time(self) -> float:
        """Seconds the current start has waited for a person's answers."""
        return self._server.asking_time() if self._server is not None else 0.0

    def settle(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(None, None, None)
