"""The engine in the foreground, as a systemd unit or a launchd agent runs it, with its tunnels.

It is the engine of the state dir (runtime/engine/resident.py), not a second runtime: ``sshwrap
status/down/up/events/reload`` reach its tunnels through the same socket. Differences: it
logs to stderr (the journal), never exits when idle nor on ``down --all``, retries a failed
first start like any later failure, and exits 0 on SIGTERM or SIGINT.

One engine per state dir holds: while another one serves it (another unit's, or the one
``up`` started), this process hands its tunnels to that engine, waits for the lock, and
becomes the engine once the other one has exited, starting whichever tunnel is not running.

Its exit status: 0 on a stop; the failure's exit code once one of its tunnels has failed
for good (auth, host key, bad input, missing binary) and nothing else runs in it, so that
the service manager shows the unit failed (the reason stays in ``sshwrap status``). While
other tunnels run in it, it keeps serving them.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from sshwrap.errors import ExitCode, InvalidInput, SshwrapError
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.engine.resident import ResidentSupervisor
from sshwrap.runtime.observe.results import LOCK_GRACE
from sshwrap.runtime.supervise.events import Event
from sshwrap.runtime.system import state
from sshwrap.runtime.system.detach import FOREGROUND_MARK
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.protocol import Served
from sshwrap.runtime.system.wire import listen_on

#: How long a first start is waited for before the answer says it goes on retrying.
DEFAULT_WAIT = 30.0
#: How often a waiting process looks whether the engine's lock is free.
LOCK_POLL = 0.2
#: Beyond ``--wait``: the engine's answer to a start comes at most this much later.
ANSWER_GRACE = 15.0
USAGE = (f"python -m sshwrap --engine {FOREGROUND_MARK} --up NAME [--up NAME ...] "
         "[--wait SECONDS]")


@dataclass(frozen=True)
class Options:
    names: tuple[str, ...]
    wait: float = DEFAULT_WAIT


def parse(args: Sequence[str]) -> Options:
    """``--up NAME`` (repeatable) and ``--wait SECONDS``; InvalidInput for anything else."""
    from sshwrap.names import checked_name

    names: list[str] = []
    wait = DEFAULT_WAIT
    words = list(args)
    while words:
        word = words.pop(0)
        if word in ("--up", "--wait") and not words:
            raise InvalidInput(f"{word} needs a value", hint=f"usage: {USAGE}")
        if word == "--up":
            name = checked_name(words.pop(0))
            if name not in names:
                names.append(name)
        elif word == "--wait":
            value = words.pop(0)
            try:
                wait = float(value)
            except ValueError:
                wait = math.nan
            if not 0 < wait < math.inf:
                raise InvalidInput(f"--wait {value!r} is not a positive number",
                                   hint=f"usage: {USAGE}")
        else:
            raise InvalidInput(f"unknown argument {word!r}", hint=f"usage: {USAGE}")
    return Options(tuple(names), wait)


def start_message(name: str, wait: float) -> dict[str, Any]:
    """The engine's ``start`` request for ``name``, with the foreground policy: a failed
    first start is retried, and the answer comes after ``wait`` even while it is."""
    from sshwrap.runtime.client.auth import asker_env, secret_for
    from sshwrap.store import ProfileStore

    store = ProfileStore.from_option(None)
    env, secret = dict(os.environ), None
    # A profile that does not load fails in the engine, which records why.
    with contextlib.suppress(SshwrapError):
        profile = store.load(name)
        env = asker_env(profile)
        if profile.password_env and profile.password_env in os.environ:
            secret = secret_for(profile)
    return {"op": "start", "name": name, "wait": wait, "foreground": True, "env": env,
            "dirs": [str(d.resolve()) for d in store.dirs], "secret": secret}


def runs(paths: StatePaths, name: str) -> bool:
    """True when a live engine supervises ``name`` (up or reconnecting, not failed)."""
    record = state.read_record(paths, name)
    return record is not None and state.live_supervisor(record) is not None


def kept_failure(paths: StatePaths, names: Sequence[str]) -> SshwrapError | None:
    """The failure of one of ``names`` kept for good (its engine let go of it), if any."""
    for name in names:
        record = state.read_record(paths, name)
        if record is not None and record.kept_failure:
            failure = record.failure()
            if failure is not None:
                return failure
    return None


class ForegroundEngine(ResidentSupervisor):
    """The engine, run by a service manager: its own tunnels started at once, no idle exit."""

    idle_exit = math.inf

    def __init__(self, paths: StatePaths, commands: Mapping[str, Served],
                 options: Options) -> None:
        super().__init__(paths, commands)
        self.options = options
        self.exit_code = int(ExitCode.OK)
        #: Our tunnels whose first start is over: a failure kept from before is not theirs.
        self.started: set[str] = set()

    def serve(self, listener: Any) -> int:
        threading.Thread(target=self._journal, args=(self.events.subscribe(),),
                         name="journal", daemon=True).start()
        for name in self.options.names:
            threading.Thread(target=self._start_own, args=(name,), name=f"start {name}",
                             daemon=True).start()
        super().serve(listener)
        return self.exit_code

    def _start_own(self, name: str) -> None:
        try:
            with state.name_lock(self.paths, name, timeout=self.options.wait + LOCK_GRACE):
                if runs(self.paths, name):
                    self.say(f"{name}: runs already")
                else:
                    answer = self.start(start_message(name, self.options.wait))
                    if answer.get("pending"):
                        self.say(f"{name}: not up yet, retrying")
        except SshwrapError as error:  # its lock is held by an up or down that hangs
            self.say(f"{name}: not started: {error.message}")
        with self.lock:
            self.started.add(name)
        self._exit_if_failed()

    def _journal(self, inbox: queue.Queue[Event | None]) -> None:
        """Every state change on stderr: the unit's journal shows what its tunnels do."""
        while (event := inbox.get()) is not None:
            self.say(f"{event.name}: {event.from_state} -> {event.to_state}"
                     + (f" ({event.reason})" if event.reason else ""))

    def _run(self, name: str, supervisor: Any, log: Any) -> None:
        super()._run(name, supervisor, log)
        self._exit_if_failed()

    def _exit_if_failed(self) -> None:
        """Exit with the failure's code once one of our tunnels failed for good and nothing
        runs here any more; while something runs, it is served on."""
        with self.lock:
            if self.tunnels or self.quit.is_set():
                return
            started = sorted(self.started)
        failure = kept_failure(self.paths, started)
        if failure is not None:
            self.say(f"{failure.message}; nothing else runs: exiting with status "
                     f"{int(failure.exit_code)}")
            self.exit_code = int(failure.exit_code)
            self.quit.set()

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("op") == "quit" and message.get("only_if_idle"):
            return {"quitting": False}  # idle is normal here: the service manager stops us
        return super()._answer(message)


def _take_lock(paths: StatePaths) -> int | None:
    fd = paths.open(daemon.lock_path(paths), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Waiter:
    """While another engine serves the state dir: our tunnels are handed to it, once per
    engine (a new one after an exit gets them again)."""

    def __init__(self, paths: StatePaths, options: Options, say: Callable[[str], None],
                 ) -> None:
        self.paths = paths
        self.options = options
        self.say = say
        self.served_by: int | None = None
        self.done = threading.Event()  # the hand-over to ``served_by`` has ended
        self.reload_asked = threading.Event()
        self.stopping = threading.Event()  # SIGTERM: hand nothing more over

    def hand_over(self) -> None:
        if self.reload_asked.is_set():
            self.reload_asked.clear()
            threading.Thread(target=self._ask, args=({"op": "reload"},), name="reload",
                             daemon=True).start()
        try:
            pid = daemon.request(self.paths, {"op": "ping"}, timeout=ANSWER_GRACE).get("pid")
        except (daemon.Unreachable, OSError, ValueError):
            return  # starting or exiting: asked again at the next look
        if pid == self.served_by:
            return
        self.served_by = pid
        self.done.clear()
        threading.Thread(target=self._hand_over, args=(pid,), name="hand over",
                         daemon=True).start()

    def _hand_over(self, pid: object) -> None:
        for name in self.options.names:
            with contextlib.suppress(OSError, ValueError, SshwrapError):
                with state.name_lock(self.paths, name, timeout=self.options.wait + LOCK_GRACE):
                    if self.stopping.is_set():  # stopped while this waited for the lock
                        break
                    if runs(self.paths, name):
                        self.say(f"{name}: runs already in the engine (pid {pid})")
                        continue
                    answer = daemon.request(self.paths, start_message(name, self.options.wait),
                                            timeout=self.options.wait + ANSWER_GRACE)
                self.say(f"{name}: handed to the engine (pid {pid}): "
                         + ("its start failed" if answer.get("error") else
                            "not up yet, retrying" if answer.get("pending") else
                            "the engine is exiting" if answer.get("exiting") else "up"))
        self.done.set()

    def failed(self) -> SshwrapError | None:
        """Every one of our tunnels failed for good in the other engine: that failure."""
        if not self.done.is_set():
            return None
        failures = [kept_failure(self.paths, [name]) for name in self.options.names]
        return failures[0] if failures and all(failures) else None

    def stop_ours(self) -> None:
        """On SIGTERM while waiting: the other engine stops our tunnels, and runs on.

        A start handed over just before may reach that engine after its stop: once the
        hand-over has ended, whatever it started is stopped too."""
        self.stopping.set()
        for name in self.options.names:
            self._ask({"op": "stop", "name": name})
        if self.served_by is not None and not self.done.is_set():
            self.done.wait(self.options.wait + LOCK_GRACE + ANSWER_GRACE)
            for name in self.options.names:  # stopping what does not run changes nothing
                self._ask({"op": "stop", "name": name})

    def _ask(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            daemon.request(self.paths, message, timeout=daemon.STOP_JOIN + ANSWER_GRACE)


def run(args: Sequence[str], commands: Mapping[str, Served]) -> int:
    """Serve the state dir in the foreground (or wait to), running ``--up`` tunnels."""
    try:
        options = parse(args)
    except SshwrapError as error:
        sys.stderr.write(f"sshwrap: error: {error.message}\n"
                         + (f"hint: {error.hint}\n" if error.hint else ""))
        return int(error.exit_code)
    with contextlib.suppress(OSError):
        os.umask(0o077)
    paths = StatePaths(StatePaths.from_env().root.absolute()).ensure()
    os.chdir("/")  # hold no directory of whoever started us
    engine = ForegroundEngine(paths, commands, options)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        engine.quit.set()  # the engine installs its own once it serves; the same effect

    waiter = Waiter(paths, options, engine.say)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # ``systemctl reload`` while another engine serves: that engine reloads.
    signal.signal(signal.SIGHUP, lambda _signum, _frame: waiter.reload_asked.set())
    while (lock_fd := _take_lock(paths)) is None:
        waiter.hand_over()
        failure = waiter.failed()
        if failure is not None:
            engine.say(f"{failure.message}: exiting with status {int(failure.exit_code)}")
            return int(failure.exit_code)
        if engine.quit.wait(LOCK_POLL):
            engine.say("stopping: the engine that runs our tunnels stops them")
            waiter.stop_ours()
            return 0
    if waiter.served_by is not None:
        engine.say(f"the engine (pid {waiter.served_by}) exited: serving the state dir")
    listener = listen_on(daemon.socket_path(paths, create=True))
    try:
        return engine.serve(listener)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            daemon.socket_path(paths).unlink()
        os.close(lock_fd)
