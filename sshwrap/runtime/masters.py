"""The supervisor of a shared connection's master: keeps it running while tunnels use it."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from sshwrap.core.model import Client, Profile
from sshwrap.errors import ExitCode, InvalidInput, NotReady, SshwrapError, StateConflict
from sshwrap.runtime import shared, state
from sshwrap.runtime.identity import Identity, own_identity
from sshwrap.runtime.paths import StatePaths
from sshwrap.runtime.shared import (
    MASTER_RESTART_WAIT,
    POLL_INTERVAL,
    STOP_TIMEOUT,
    USERS_INTERVAL,
    WATCH_INTERVAL,
    _remove_socket,
    _try_lock,
    connection_key,
    control_path,
    master_argv,
    master_name,
    master_paths,
    mux,
    users,
)
from sshwrap.runtime.state import Mode, TunnelRecord

if TYPE_CHECKING:
    from sshwrap.runtime.auth import ClientStarter
    from sshwrap.runtime.launch import Launched
    from sshwrap.store import ProfileStore


class Stopping(BaseException):
    """Raised when a stop was asked: SIGTERM, or (in the engine) ``request_stop``."""


@dataclass
class MasterSupervisor:
    """Keeps one master running while tunnels use it; restarts it with backoff."""

    profile: Profile
    key: str
    paths: StatePaths
    first_wait: float
    secret: str | None = None
    log: TextIO = sys.stderr
    #: The engine's identity when a thread of it runs this (None: a process of its own).
    identity: Identity | None = None

    def __post_init__(self) -> None:
        import random

        self.mpaths = master_paths(self.paths).ensure()
        self.name = master_name(self.key)
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.child: Launched | None = None
        self.record: TunnelRecord | None = None
        self._starter: ClientStarter | None = None
        self._stopping = False
        self._stop_requested = threading.Event()

    def request_stop(self) -> None:
        """Ask the loop, from another thread, to stop the master and end."""
        self._stop_requested.set()

    def _sleep(self, seconds: float) -> None:
        """Sleep, but end the loop at once when a stop is asked."""
        if self._stop_requested.wait(seconds) and not self._stopping:
            self._stopping = True
            raise Stopping("stop requested")

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.log.write(f"--- sshwrap shared connection {self.name} {stamp}: {text}\n")
        self.log.flush()

    def _update(self, **changes: object) -> None:
        if self.record is not None:
            self.record = replace(self.record, **changes)  # type: ignore[arg-type]
            state.write_record(self.mpaths, self.record)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            self._stopping = True
            raise Stopping(signal.Signals(signum).name)

    def _stop_child(self) -> None:
        from sshwrap.runtime.launch import stop_group

        if self._starter is not None:
            self._starter.settle()
        if self.child is not None:
            stop_group(self.child.pid, timeout=STOP_TIMEOUT)
            self.child.popen.poll()
            self.child = None

    def _cleanup(self) -> None:
        self._stop_child()
        with contextlib.suppress(StateConflict):
            _remove_socket(control_path(self.paths, self.key))
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
        finally:
            self._stop_child()

    def _start(self, argv: list[str], control: Path, wait: float) -> Launched:
        from sshwrap.runtime.auth import ClientStarter

        if control.exists():  # a master killed -9 leaves its socket; ssh would not replace it
            if mux(control, "check").returncode == 0:
                mux(control, "exit")
            _remove_socket(control)
        if self._starter is None:
            self._starter = ClientStarter(self.profile, self.secret, self.paths.root)
        launched = self.child = self._starter.start(
            self.name, argv, self.mpaths.log(self.name), owned_by_parent=True)
        self._update(pid=launched.pid, create_time=launched.create_time, argv=launched.argv,
                     started_at=time.time(), log_offset=launched.log_offset, verified=False,
                     next_retry=None)
        wait_master_ready(launched, self.profile, control, wait=wait)
        self._starter.settle()
        return launched

    def _supervise(self) -> int:
        from sshwrap.machine import host_facts
        from sshwrap.runtime.restart import (
            STABLE_AFTER,
            backoff_delay,
            first_hop,
            is_fatal,
            wait_for_path,
        )

        control = control_path(self.paths, self.key)
        argv = master_argv(self.profile, host_facts(), control, self.mpaths.log(self.name))
        pid, create_time, own_argv = self.identity or own_identity()
        self.record = TunnelRecord(
            name=self.name, pid=0, create_time=0.0, argv=(), profile_hash=self.key,
            client=Client.SSH.value, started_at=time.time(), forwards=(),
            log_path=str(self.mpaths.log(self.name)), supervisor_pid=pid,
            supervisor_create_time=create_time, supervisor_argv=own_argv,
            shared=self.key,
            mode=(Mode.PROCESS if self.identity is None else Mode.ENGINE).value)
        self._update(phase="starting")
        failures = restarts = 0
        first = True
        while True:
            try:
                launched = self._start(argv, control,
                                       self.first_wait if first else MASTER_RESTART_WAIT)
            except SshwrapError as error:
                self._stop_child()
                if first or is_fatal(error):
                    self.record = self.record.failed(error)
                    state.write_record(self.mpaths, self.record)
                    self.say(f"failed: {error.message}")
                    return int(error.exit_code)
                failures += 1
                delay = backoff_delay(failures, self.rng)
                self._update(phase="reconnecting", last_failure=error.message,
                             next_retry=time.time() + delay)
                self.say(f"reconnecting in {delay:.1f} s: {error.message}")
                wait_for_path(first_hop(self.profile), delay, sleep=self._sleep)
                if self._unused():
                    return int(ExitCode.OK)
                continue
            first = False
            self._update(phase="up", verified=True)
            self.say(f"up (master pid {launched.pid})")
            up_since = time.monotonic()
            if self._watch(launched):
                return int(ExitCode.OK)
            self.child = None
            if time.monotonic() - up_since >= STABLE_AFTER:
                failures = 0  # a master that stayed up a while starts the backoff over
            failures += 1
            restarts += 1
            delay = backoff_delay(failures, self.rng)
            reason = f"the master (pid {launched.pid}) ended with status " \
                     f"{launched.popen.returncode}"
            self._update(phase="reconnecting", verified=False, last_failure=reason,
                         restarts=restarts, next_retry=time.time() + delay)
            self.say(f"{reason}; restarting in {delay:.1f} s")
            wait_for_path(first_hop(self.profile), delay, sleep=self._sleep)

    def _watch(self, launched: Launched) -> bool:
        """Until the master ends (False) or no tunnel uses it any more (True: stopped)."""
        next_users = time.monotonic() + USERS_INTERVAL
        while launched.popen.poll() is None:
            self._sleep(WATCH_INTERVAL)
            if time.monotonic() >= next_users:
                next_users = time.monotonic() + USERS_INTERVAL
                if self._unused():
                    return True
        return False

    def _unused(self) -> bool:
        """When no live tunnel uses the master: stop everything (under the master's lock,
        so that no tunnel joins meanwhile) and say so."""
        with _try_lock(self.mpaths, self.name) as locked:
            if not locked or users(self.paths, self.key):
                return False
            self.say("no tunnel uses the shared connection any more; stopping it")
            self._cleanup()
            return True


@dataclass
class _Hosted:
    """A master supervised by a thread of the engine."""

    supervisor: MasterSupervisor
    thread: threading.Thread

    def stop(self, timeout: float) -> None:
        self.supervisor.request_stop()
        self.thread.join(timeout + STOP_TIMEOUT)


def start_hosted(paths: StatePaths, profile: Profile, key: str, wait: float,
                 secret: str | None) -> int:
    """Supervise the master of ``key`` in a thread of this process, the engine (registered
    with shared.host_masters); this process's pid. The thread lives as long as the master:
    the master's parent-death signal follows it."""
    log = open(master_paths(paths).ensure().log(master_name(key)), "a",  # noqa: SIM115
               encoding="utf-8")  # the thread closes it
    supervisor = MasterSupervisor(profile, key, paths, wait, secret, log=log,
                                  identity=own_identity())

    def run() -> None:
        try:
            supervisor.run(handle_signals=False)
        finally:
            log.close()
            if shared.hosted.get((paths.root, key)) is hosted:
                del shared.hosted[(paths.root, key)]

    hosted = _Hosted(supervisor, threading.Thread(target=run, name=f"master {key}",
                                                  daemon=True))
    shared.hosted[(paths.root, key)] = hosted
    hosted.thread.start()
    return os.getpid()


def wait_master_ready(launched: Launched, profile: Profile, control: Path, *,
                      wait: float) -> None:
    """Until the master answers on its control socket (it listens once authenticated)."""
    from sshwrap.runtime.verify import LogReader, failure_from_log

    deadline = time.monotonic() + wait
    reader = LogReader(launched.log_path, launched.log_offset)
    while True:
        if launched.popen.poll() is not None:
            raise failure_from_log(profile.name, reader.read(), profile)
        if control.exists() and mux(control, "check").returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{profile.name}: the shared connection was not ready after "
                           f"{wait:g} s", hint="raise --wait, or run 'sshwrap check'")
        time.sleep(POLL_INTERVAL)


# -- entry point of the master's supervisor -----------------------------------------------


def run_master(profile_name: str, key: str, *, wait: float, paths: StatePaths | None = None,
               store: ProfileStore | None = None, stdin: TextIO | None = None) -> int:
    from sshwrap.runtime.detach import read_secret
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
    parser = argparse.ArgumentParser(prog="python -m sshwrap --engine master")
    parser.add_argument("profile")
    parser.add_argument("--key", required=True)
    parser.add_argument("--wait", type=float, default=MASTER_RESTART_WAIT)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.umask(0o077)
    return run_master(args.profile, args.key, wait=args.wait, stdin=sys.stdin)
