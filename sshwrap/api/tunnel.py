"""``sshwrap.Tunnel``: a verified OpenSSH tunnel owned by the calling Python process."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from queue import Queue
from types import TracebackType
from typing import IO, Any

from sshwrap.api import program
from sshwrap.api.forwards import ForwardSpec, OpenForward
from sshwrap.core.model import AuthMethod, Profile, TcpAddress, UnixAddress
from sshwrap.errors import SshwrapError
from sshwrap.runtime.client.questions import AskQuestion
from sshwrap.runtime.observe.results import TunnelState, TunnelStatus
from sshwrap.runtime.supervise.hooks import Hooks
from sshwrap.runtime.supervise.supervisor import Supervisor
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.store import ProfileStore

#: Seconds ``start`` waits for every forward to be verified, as ``sshwrap up --wait``.
DEFAULT_WAIT = 30.0
#: Seconds a stop waits for the client to end (SIGTERM, then SIGKILL) and its thread to join.
STOP_JOIN = 15.0
# Program-wide on purpose: the API's tunnels belong to the calling program, not to an engine
# object; these three are all it keeps of them (api/program.py keeps its stores and reads).
#: A number for each tunnel made without a name.
_numbers = itertools.count(1)
#: Tunnels started and not yet stopped: stopped at interpreter exit.
_running: weakref.WeakSet[Tunnel] = weakref.WeakSet()
#: The hooks of every tunnel of the program: one tunnel's hooks never see the password
#: variable of another (runtime/supervise/hooks.py).
_hooks = Hooks()


def _stop_all_at_exit() -> None:
    for tunnel in list(_running):
        with contextlib.suppress(Exception):
            tunnel.stop()


atexit.register(_stop_all_at_exit)

#: The private directory of a tunnel: ``<tmp>/sshwrap-tunnel-<pid of its program>-<random>``.
PRIVATE_PREFIX = "sshwrap-tunnel-"


def _remove_dead_tunnels_files() -> None:
    """Remove the private directories of tunnels whose program was killed (nothing of
    theirs runs: their clients died with them)."""
    import psutil

    for path in Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*-*"):
        pid = path.name[len(PRIVATE_PREFIX):].partition("-")[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and path.stat().st_uid == os.getuid() \
                    and not psutil.pid_exists(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


class Tunnel:
    """An SSH tunnel run by the system's OpenSSH client, as a child of this process.

    The keywords are a profile's keys (``host``, ``jump``, ``user``, ``port``,
    ``identity_file``, ``ssh_config_file``, ``client``, ``host_key``, ``keepalive``,
    ``restart``, ``options``, ...) and are checked by the same parser as a profile file:
    a bad value raises ``InvalidInput`` naming the key. ``forwards`` are ``Local``,
    ``Remote`` and ``Dynamic``; ``listen=0`` binds a free port, the same one on every
    loopback family. ``password`` (kept in memory only, answered through sshwrap's askpass
    socket) or ``password_env`` authenticate by password; ``passphrase`` unlocks an
    encrypted ``identity_file``.

    ``prompt`` answers the server's own questions (keyboard-interactive, after the key or
    password: ``Verification code:`` of a one-time code): ``prompt(text)`` gets the question
    as ssh words it, ``(user@host) Verification code: `` (server text: escape it before
    showing it, e.g. with ``sshwrap.textsafe.escaped``), and returns the answer, or raises
    (or returns None) to give up. It runs in the tunnel's worker thread, also under
    ``async with``; each question is asked at most once, on the first start only: a restart
    that meets a question fails (``AuthFailed``), as does any start without ``prompt``.

    ``with Tunnel(...) as t`` (or ``async with``, or ``start()``) returns once every forward
    is verified exactly as ``sshwrap up`` verifies it; leaving the block (also by an
    exception or KeyboardInterrupt), ``stop()`` or the end of the process ends the client
    and removes everything it left. The client is restarted by the profile's ``restart``
    policy while the tunnel is open.
    """

    def __init__(self, host: str | None = None, *, forwards: Sequence[ForwardSpec] = (),
                 jump: Sequence[str] = (), password: str | None = None,
                 passphrase: str | None = None, name: str | None = None,
                 wait: float = DEFAULT_WAIT, prompt: AskQuestion | None = None,
                 **keys: Any) -> None:
        from sshwrap.core.parse import parse_profile

        if host is not None:
            keys["host"] = host
        if jump:
            keys["jump"] = list(jump)
        if forwards:
            keys["forward"] = [f.to_mapping() for f in forwards]
        if password is not None:
            keys.setdefault("auth", AuthMethod.PASSWORD.value)
        if "options" in keys and isinstance(keys["options"], Mapping):
            keys["options"] = dict(keys["options"])
        name = name or f"python-{os.getpid()}-{next(_numbers)}"
        self._init(parse_profile(name, keys), wait=wait, password=password,
                   passphrase=passphrase, prompt=prompt)

    def _init(self, profile: Profile, *, wait: float, password: str | None,
              passphrase: str | None, prompt: AskQuestion | None = None) -> None:
        from sshwrap.runtime.client.auth import secret_for
        from sshwrap.usecases.selection import check_wait

        check_wait(wait)
        # Never shared: a tunnel of this process runs on a connection of its own.
        self.profile = replace(profile, share_connection=False)
        given = password if profile.auth is AuthMethod.PASSWORD else passphrase
        self._secret = secret_for(self.profile, lambda _p: given)
        self.wait = wait
        self._prompt = prompt
        self._lock = threading.Lock()
        self._starting = threading.Lock()
        self._supervisor: Supervisor | None = None
        self._thread: threading.Thread | None = None
        self._root: Path | None = None
        self._log: IO[str] | None = None

    @classmethod
    def from_profile(cls, name_or_path: str, *, password: str | None = None,
                     passphrase: str | None = None, wait: float = DEFAULT_WAIT,
                     profiles_dir: Sequence[str | os.PathLike[str]] | None = None,
                     prompt: AskQuestion | None = None) -> Tunnel:
        """A saved profile, found as the command line finds it (or a path to a .toml file)."""
        dirs = [Path(d) for d in profiles_dir] if profiles_dir else None
        store = program.stores.get(ProfileStore.from_option(dirs).dirs)
        profile = store.load(str(name_or_path))
        tunnel = cls.__new__(cls)
        tunnel._init(profile, wait=wait, password=password, passphrase=passphrase,
                     prompt=prompt)
        return tunnel

    def __repr__(self) -> str:
        return f"<sshwrap.Tunnel {self.profile.name} to {self.profile.host} pid={self.pid}>"

    # -- what it runs ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def is_running(self) -> bool:
        """Started, verified, and not stopped since (the client may be reconnecting)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        """The ssh (or plink) client's pid while it runs."""
        supervisor = self._supervisor
        child = supervisor.child if supervisor is not None else None
        return child.pid if child is not None else None

    @property
    def forwards(self) -> tuple[OpenForward, ...]:
        """The forwards, in the order given, with the ports bound once started."""
        supervisor = self._supervisor
        running = supervisor.profile if supervisor is not None else None
        profile: Profile = running if running is not None and self.is_running else self.profile
        out = []
        for forward in profile.forwards:
            listen = forward.listen
            to = forward.to.render() if forward.to is not None else None
            if isinstance(listen, UnixAddress):
                out.append(OpenForward(forward.type.value, listen.render(), to, None, None,
                                       listen.path))
                continue
            assert isinstance(listen, TcpAddress)  # noqa: S101 - an Address is TCP or unix
            host = listen.host if listen.host not in (None, "localhost") else "127.0.0.1"
            out.append(OpenForward(forward.type.value, listen.render(), to, host,
                                   listen.port or None))
        return tuple(out)

    def _first_local(self) -> OpenForward:
        for forward in self.forwards:
            if forward.type != "remote" and forward.listen_port is not None:
                return forward
        raise AttributeError(f"tunnel {self.name} has no running local or dynamic TCP forward")

    @property
    def local_host(self) -> str:
        """The address of the first local or dynamic forward (loopback: 127.0.0.1)."""
        return str(self._first_local().listen_host)

    @property
    def local_port(self) -> int:
        """The port of the first local or dynamic forward."""
        return int(self._first_local().listen_port or 0)

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> Tunnel:
        """Start the client and return once every forward is verified; raise the error
        ``sshwrap up`` would report otherwise (nothing is left running then)."""
        with self._starting:  # a second start() waits for the first, then finds it running
            return self._start()

    def _start(self) -> Tunnel:
        with self._lock:
            if self.is_running:
                return self
            # Logs, client config and askpass socket in a private directory of this tunnel.
            _remove_dead_tunnels_files()
            self._root = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
            paths = StatePaths(self._root).ensure()
            first: Queue[SshwrapError | None] = Queue(maxsize=1)
            self._log = os.fdopen(paths.open(self._root / "supervisor.log",
                                             os.O_WRONLY | os.O_CREAT | os.O_APPEND),
                                  "a", encoding="utf-8")
            self._supervisor = Supervisor(
                self.profile, paths,
                first_wait=self.wait, foreground=False, secret=self._secret, log=self._log,
                on_first_result=first.put, ask=self._prompt, hooks=_hooks, ready=program.ready)
            # The client dies with the thread that spawned it (parent-death signal): the
            # supervisor's thread, which lives exactly as long as the tunnel.
            thread = self._thread = threading.Thread(
                target=self._supervisor.run, kwargs={"handle_signals": False},
                name=f"sshwrap tunnel {self.name}", daemon=True)
            thread.start()
            _running.add(self)
        try:
            error = first.get()
        except BaseException:  # KeyboardInterrupt while waiting: nothing may stay behind
            self.stop()
            raise
        if error is None and thread.is_alive():
            return self
        self.stop()
        raise error if error is not None else SshwrapError(
            f"{self.name}: the tunnel was stopped while it started")

    def stop(self) -> None:
        """Stop the client and remove its files; a no-op when it is not running."""
        with self._lock:
            supervisor, thread, root, log = self._supervisor, self._thread, self._root, self._log
            if supervisor is None or thread is None:
                return
            supervisor.request_stop()
            thread.join(STOP_JOIN)
            if log is not None:
                log.close()
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
            self._supervisor = self._thread = self._root = self._log = None
            _running.discard(self)

    def status(self) -> TunnelStatus:
        """Its row as ``sshwrap status`` gives one: state, pid, uptime, forwards with their
        health and open connections, the first hop's round-trip time (``rtt_ms``)."""
        from sshwrap.usecases.status import status

        root = self._root
        if root is None or not self.is_running:
            return TunnelStatus(self.name, TunnelState.DOWN, None, None, 0, False, ())
        return status(ProfileStore(()), [self.name], StatePaths(root)).tunnels[0]

    def log_text(self) -> str:
        """What the client has logged so far (for a failure's details)."""
        if self._root is None:
            return ""
        path = self._root / "logs" / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Tunnel:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Tunnel:
        loop = asyncio.get_running_loop()
        starting = loop.run_in_executor(None, self.start)
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The start goes on in its thread; stop the tunnel once it is done, off the loop.
            starting.add_done_callback(
                lambda _f: threading.Thread(target=self.stop, daemon=True).start())
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await asyncio.shield(asyncio.to_thread(self.stop))

