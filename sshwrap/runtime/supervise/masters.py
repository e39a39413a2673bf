"""The supervisor of a shared connection's master: keeps it running while tunnels use it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Client, Profile, RestartPolicy
from sshwrap.errors import (
    ExitCode,
    InvalidInput,
    SshwrapError,
    StateConflict,
    StateUnusable,
)
from sshwrap.runtime.supervise.clientowner import ClientOwner, Stopping
from sshwrap.runtime.supervise.hosting import Hosting, users
from sshwrap.runtime.supervise.restart import Ended, Phase, RestartLoop, first_hop
from sshwrap.runtime.supervise.shared import (
    MASTER_RESTART_WAIT,
    STOP_TIMEOUT,
    USERS_INTERVAL,
    WATCH_INTERVAL,
    _remove_socket,
    _try_lock,
    connection_key,
    control_path,
    master_launch,
    master_name,
    master_paths,
    mux,
    wait_master_ready,
)
from sshwrap.runtime.system import state
from sshwrap.runtime.system.identity import Identity, own_identity
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import Mode, TunnelRecord

__all__ = ["MasterSupervisor", "Stopping", "main", "run_master", "start_hosted"]

if TYPE_CHECKING:
    from sshwrap.runtime.client.auth import ClientStarter
    from sshwrap.runtime.client.launch import Launched
    from sshwrap.store import ProfileStore


@dataclass
class MasterSupervisor(ClientOwner):
    """Keeps one master running while tunnels use it, by the engine's one restart loop."""

    profile: Profile
    key: str
    paths: StatePaths
    first_wait: float
    secret: str | None = None
    log: TextIO = sys.stderr
    #: The engine's identity when a thread of it runs this (None: a process of its own).
    identity: Identity | None = None
    #: The environment of the ``up`` that asked for it (the engine's own keeps no agent
    #: socket nor anything else of a user's shell: runtime/system/detach.py ENGINE_ENVIRONMENT).
    env: Mapping[str, str] | None = None
    #: The engine's shared connections, when a thread of it runs this: the users of the
    #: master are its tunnels.
    hosting: Hosting | None = None

    def __post_init__(self) -> None:
        import random

        self.mpaths = master_paths(self.paths).ensure()
        self.name = master_name(self.key)
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.child: Launched | None = None
        self.record: TunnelRecord | None = None
        self._secret = self.secret
        self._starter: ClientStarter | None = None
        self._stopping = False
        self._stop_requested = threading.Event()
        #: Notified on every change of the record, and when supervision ends: tunnels that
        #: wait for the master to be up wait here (wait_up).
        self._changed = threading.Condition()
        self._ended = False
        self._dropped: str | None = None
        #: The last master ended after a network change (netwatch), and why: its tunnels
        #: tell that reason when they see it gone.
        self.last_drop: tuple[int, str] | None = None
        self._control = control_path(self.paths, self.key)
        self._bare, self._spec = master_launch(self.profile, self._control,
                                               self.mpaths.log(self.name))
        self._facts: HostFacts | None = None

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with contextlib.suppress(OSError, ValueError):  # a log on a full disk
            self.log.write(f"--- sshwrap shared connection {self.name} {stamp}: {text}\n")
            self.log.flush()

    def update(self, **changes: object) -> None:
        """The record's one writer is this supervisor's thread (no events: a master is not
        a tunnel; its tunnels tell theirs). Kept in memory, and its waiters told, even when
        the state dir cannot take it (StateUnusable is raised then)."""
        if self.record is not None:
            self.record = replace(self.record, **changes)  # type: ignore[arg-type]
            try:
                state.write_record(self.mpaths, self.record)
            finally:
                with self._changed:
                    self._changed.notify_all()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            self._stopping = True
            raise Stopping(signal.Signals(signum).name)

    def _cleanup(self) -> None:
        self._stop_child()
        with contextlib.suppress(StateConflict):
            _remove_socket(self._control)
        state.remove_record(self.mpaths, self.name)

    def run(self, *, handle_signals: bool = True) -> int:
        if handle_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._supervise()
        except Stopping:
            self.say("stopping on request")
            self._cleanup()
            return int(ExitCode.OK)
        except Exception as bug:  # a bug of its own: a failure kept like any other
            return self._failed(SshwrapError(
                f"{self.name}: internal error of its supervisor: {type(bug).__name__}: {bug}"))
        finally:
            self._stop_child()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _supervise(self) -> int:
        from sshwrap.machine import host_facts

        self._facts = host_facts()
        pid, create_time, own_argv = self.identity or own_identity()
        self.record = TunnelRecord(
            name=self.name, pid=0, create_time=0.0, argv=(), profile_hash=self.key,
            client=Client.SSH.value, started_at=time.time(), forwards=(),
            log_path=str(self.mpaths.log(self.name)), supervisor_pid=pid,
            supervisor_create_time=create_time, supervisor_argv=own_argv,
            shared=self.key,
            mode=(Mode.PROCESS if self.identity is None else Mode.ENGINE).value)
        self.update(phase=Phase.STARTING.value)  # before ssh runs: stop_master finds us
        loop = RestartLoop(self, first_wait=self.first_wait, retry_first=False,
                           restart_wait=MASTER_RESTART_WAIT, rng=self.rng)
        try:
            loop.run()
        except SshwrapError as error:
            return self._failed(error)
        return int(ExitCode.OK)

    def _failed(self, error: SshwrapError) -> int:
        """Record the master failed for good (its tunnels see it and fail or retry); a state
        dir that cannot take it leaves it in memory, where its tunnels read it."""
        self._stop_child()
        if self.record is not None:
            self.record = self.record.failed(error)
            with contextlib.suppress(StateUnusable):
                self.update()  # written, and its waiters told
        self.say(f"failed: {error.message}")
        return int(error.exit_code)

    # -- what the restart loop runs (runtime/supervise/restart.py) ------------------------

    policy = RestartPolicy.ALWAYS  # kept while some tunnel uses it

    def hop(self) -> tuple[str, int]:
        return first_hop(self.profile)

    def first_hop(self) -> tuple[str, int] | None:
        return first_hop(self.profile)

    def start(self, phase: Phase, wait: float) -> Mapping[str, object]:
        from sshwrap.runtime.client.auth import ClientStarter
        from sshwrap.runtime.client.questions import relay_of

        control = self._control
        if control.exists():  # a master killed -9 leaves its socket; ssh would not replace it
            if mux(control, "check", hosting=self.hosting).returncode == 0:
                mux(control, "exit", hosting=self.hosting)
            _remove_socket(control)
        if self._starter is None:
            # From the environment of the up that asked (its agent socket): the engine's
            # own has none.
            self._starter = ClientStarter(self.secret, self.paths.root, base_env=self.env,
                                          ask=relay_of(self.env, f"{self.profile.name} (shared)"))
        with state.state_errors(self.paths):  # its log in a state dir that cannot take it
            launched = self.child = self._starter.start(
                self.name, self._bare, self._facts or HostFacts(), self._spec,
                self.mpaths.log(self.name), owned_by_parent=True)
        self.update(pid=launched.pid, create_time=launched.create_time,
                            argv=launched.argv, started_at=time.time(),
                            log_offset=launched.log_offset, verified=False, next_retry=None,
                            phase=phase.value)
        wait_master_ready(launched, self.profile, control, wait=wait, paused=self.asking_time,
                          hosting=self.hosting)
        self._starter.settle()
        return {}

    def watch(self) -> Ended | None:
        """Until the master ends, or no tunnel uses it any more (None: stopped)."""
        launched = self.child
        next_users = time.monotonic() + USERS_INTERVAL
        while launched is not None and launched.popen.poll() is None:
            self.sleep(WATCH_INTERVAL)
            if time.monotonic() >= next_users:
                next_users = time.monotonic() + USERS_INTERVAL
                if self._unused():
                    return None
        self.child = None
        status = launched.popen.returncode if launched is not None else 255
        dropped, self._dropped = self._dropped, None
        reason = dropped or f"the master (pid {launched.pid if launched else 0}) ended " \
                            f"with status {status}"
        self.say(reason)
        return Ended(reason, status or 255, dropped=dropped is not None)

    def stop(self) -> None:
        self._stop_child()

    def verified(self) -> None:
        self.say(f"up (master pid {self.record.pid if self.record else 0})")

    def wanted(self) -> bool:
        return not self._unused()

    def drop_connection(self, reason: str) -> None:
        """End a master whose connection cannot survive (from the engine's network watch):
        restarted at once, without backoff; its tunnels add their forwards again."""
        child = self.child
        if child is None or child.popen.returncode is not None:
            return
        self.last_drop = (child.pid, reason)
        self._dropped = reason
        self.say(f"{reason}: restarting the shared connection")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)

    def wait_up(self, timeout: float) -> TunnelRecord | None:
        """up_record() once the master is up, waiting up to ``timeout`` seconds while it
        starts; None when it failed, ended or is still not up (the caller then reads the
        record under the master's lock and reports why)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                record = self.up_record()
                remaining = deadline + self.asking_time() - time.monotonic()
                if record is not None or self._ended or remaining <= 0 or (
                        self.record is not None and self.record.phase == "failed"):
                    return record
                self._changed.wait(remaining)

    def up_record(self) -> TunnelRecord | None:
        """Its record while its master runs, verified: what a tunnel joining it needs."""
        record, child = self.record, self.child
        if record is None or record.phase != Phase.UP.value or not record.verified \
                or child is None or child.popen.poll() is not None or child.pid != record.pid:
            return None
        return record

    def drop_reason(self, pid: int) -> str | None:
        """Why the master ``pid`` was ended after a network change, if it was."""
        last = self.last_drop
        return last[1] if last is not None and last[0] == pid else None

    def _unused(self) -> bool:
        """When no live tunnel uses the master: stop everything (under the master's lock,
        so that no tunnel joins meanwhile) and say so."""
        with _try_lock(self.mpaths, self.name) as locked:
            if not locked or users(self.paths, self.key, hosting=self.hosting):
                return False
            self.say("no tunnel uses the shared connection any more; stopping it")
            self._cleanup()
            return True


@dataclass
class _Hosted:
    """A master supervised by a thread of the engine; re-verified after a network change
    like the engine's tunnels (runtime/supervise/netwatch.py)."""

    supervisor: MasterSupervisor
    thread: threading.Thread

    def stop(self, timeout: float) -> None:
        self.supervisor.request_stop()
        self.thread.join(timeout + STOP_TIMEOUT)

    def client_pid(self) -> int | None:
        return self.supervisor.client_pid()

    def first_hop(self) -> tuple[str, int] | None:
        return self.supervisor.first_hop()

    def drop_connection(self, reason: str) -> None:
        self.supervisor.drop_connection(reason)

    def drop_reason(self, pid: int) -> str | None:
        return self.supervisor.drop_reason(pid)

    def wait_up(self, timeout: float) -> TunnelRecord | None:
        return self.supervisor.wait_up(timeout)

    def asking_time(self) -> float:
        return self.supervisor.asking_time()


def start_hosted(hosting: Hosting, paths: StatePaths, profile: Profile, key: str, wait: float,
                 *, secret: str | None, env: Mapping[str, str] | None) -> int:
    """Supervise the master of ``key`` in a thread of this process, the engine, registered
    with its ``hosting``; this process's pid. The thread lives as long as the master:
    the master's parent-death signal follows it."""
    mpaths = master_paths(paths).ensure()
    log = os.fdopen(  # the thread closes it
        mpaths.open(mpaths.log(master_name(key)), os.O_WRONLY | os.O_CREAT | os.O_APPEND),
        "a", encoding="utf-8")
    supervisor = MasterSupervisor(profile, key, paths, wait, secret, log=log,
                                  identity=own_identity(), env=env, hosting=hosting)

    def run() -> None:
        try:
            supervisor.run(handle_signals=False)
        finally:
            with contextlib.suppress(OSError):  # what it could not flush to a full disk
                log.close()
            hosting.remove(key, hosted)

    hosted = _Hosted(supervisor, threading.Thread(target=run, name=f"master {key}",
                                                  daemon=True))
    hosting.add(key, hosted)
    hosted.thread.start()
    return os.getpid()


# -- entry point of the master's supervisor -----------------------------------------------


def run_master(profile_name: str, key: str, *, wait: float, paths: StatePaths | None = None,
               store: ProfileStore | None = None, stdin: TextIO | None = None) -> int:
    from sshwrap.runtime.system.detach import read_secret
    from sshwrap.store import ProfileStore

    secret = read_secret(stdin)
    paths = paths or StatePaths.from_env()
    store = store or ProfileStore.from_option(None)
    try:
        profile = store.load(profile_name)
        if connection_key(profile) != key:
            raise InvalidInput(f"{profile_name}: its connection settings changed while a "
                               "shared connection was being started")
    except SshwrapError as error:
        sys.stderr.write(f"--- sshwrap shared connection {master_name(key)}: cannot start: "
                         f"{error.message}\n")
        return int(error.exit_code)
    return MasterSupervisor(profile, key, paths, wait, secret).run()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sshwrap --engine master")
    parser.add_argument("profile")
    parser.add_argument("--key", required=True)
    parser.add_argument("--wait", type=float, default=MASTER_RESTART_WAIT)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.umask(0o077)
    return run_master(args.profile, args.key, wait=args.wait, stdin=sys.stdin)
