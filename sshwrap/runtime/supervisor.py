"""The per-tunnel supervisor: owns the client, restarts it by the profile's policy, records it.

It runs as a thread of the resident supervisor (runtime/daemon.py), or alone in a process of
its own (a systemd unit, a shared connection's tunnel).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from types import FrameType
from typing import TextIO

from sshwrap.core.model import Profile, RestartPolicy
from sshwrap.errors import (
    AuthFailed,
    ExitCode,
    ForwardingFailed,
    InvalidInput,
    MissingBinary,
    SshwrapError,
)
from sshwrap.runtime import state, unixsock
from sshwrap.runtime.auth import ClientStarter
from sshwrap.runtime.launch import Launched, client_argv, stop_group
from sshwrap.runtime.paths import StatePaths
from sshwrap.runtime.shared import SharedTunnel, wants_sharing
from sshwrap.runtime.state import TunnelRecord
from sshwrap.runtime.verify import ForwardCheck, LogReader, wait_ready
from sshwrap.store import ProfileStore

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
#: A client that stayed up this long starts the backoff over from BACKOFF_START.
STABLE_AFTER = 60.0
#: While waiting out a backoff the first hop is probed this often, to retry as soon as it is back.
PROBE_INTERVAL = 0.25
#: A restart attempt (not the first start, which uses up's --wait) gets this long to verify.
RESTART_READY_WAIT = 30.0
STOP_TIMEOUT = 5.0
MODULE = "sshwrap.runtime.supervisor"

#: Failures that the same attempt would meet again: no retry loop, the tunnel goes failed.
FATAL_ERRORS: tuple[type[SshwrapError], ...] = (AuthFailed, InvalidInput, MissingBinary)
REMOTE_HELD_HINT = ("the server keeps a dead session's ports until it notices; set "
                    "ClientAliveInterval 5 and ClientAliveCountMax 2 in its sshd_config")


#: pid, create time and command line of a supervisor, as tunnel records keep them
Identity = tuple[int, float, tuple[str, ...]]


class Phase(StrEnum):
    STARTING = "starting"
    UP = "up"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


class Stopping(BaseException):
    """Raised when a stop was asked (SIGTERM/SIGINT, or the resident supervisor's ``down``):
    unwind, stop the client, exit 0."""


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Seconds before attempt number ``failures`` (1-based): doubling from BACKOFF_START up to
    BACKOFF_CAP, with jitter so that many tunnels cut at once do not retry in lockstep."""
    base = min(BACKOFF_CAP, BACKOFF_START * 2 ** max(0, failures - 1))
    return float(base * rng.uniform(0.75, 1.0))


def is_fatal(error: SshwrapError) -> bool:
    return isinstance(error, FATAL_ERRORS)


def is_remote_held(error: SshwrapError) -> bool:
    """The server refused a remote forward: on a restart, most likely the dead session's."""
    return isinstance(error, ForwardingFailed) and "refused remote forward" in error.message


def supervisor_command(name: str, *, wait: float | None = None,
                       foreground: bool = False, share: bool = False) -> list[str]:
    """The argv that runs the supervisor of ``name`` with this Python."""
    argv = [sys.executable, "-m", MODULE, name]
    if wait is not None:
        argv += ["--wait", f"{wait:g}"]
    if foreground:
        argv.append("--foreground")
    if share:
        argv.append("--share")
    return argv


def first_hop(profile: Profile) -> tuple[str, int]:
    """Host and port the first TCP connection of the tunnel goes to."""
    if profile.jump:
        return profile.jump[0].host, profile.jump[0].port or 22
    return profile.host, profile.port or 22


def probe(host: str, port: int, timeout: float = PROBE_INTERVAL) -> bool | None:
    """True when ``host:port`` accepts a TCP connection, False when not, None when the name
    does not resolve here (an alias only ssh's config knows: nothing to learn from a probe)."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except socket.gaierror:
        return None
    except OSError:
        return False


def read_secret(stream: TextIO | None) -> str | None:
    """One optional line handed over by ``up`` through the stdin pipe (never argv, env or
    state); kept in memory for every restart. None when nothing was given."""
    if stream is None or stream.closed or stream.isatty():
        return None
    line = stream.readline()
    return line.rstrip("\n") or None


class Supervisor:
    """Runs one tunnel's client until stopped, restarting it according to ``restart``."""

    def __init__(self, name: str, paths: StatePaths, store: ProfileStore, *,
                 first_wait: float, foreground: bool, secret: str | None = None,
                 log: TextIO = sys.stderr, share: bool = False,
                 env: Mapping[str, str] | None = None, identity: Identity | None = None,
                 on_first_result: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.paths = paths.ensure()
        self.store = store
        self.first_wait = first_wait
        self.foreground = foreground
        self._secret = secret  # for the client's authentication; never written anywhere
        self._starter: ClientStarter | None = None
        self.log = log
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.child: Launched | None = None
        self.record: TunnelRecord | None = None
        self._stopping = False
        self.share = share  # on a shared connection even if the profile does not ask for one
        #: Run on a requested stop before the record goes (a shared tunnel leaves its master).
        self.on_stop: Callable[[], None] | None = None
        #: The environment of the ``up`` that started the tunnel (agent socket and all).
        self.env = env
        self._identity_given = identity
        #: Told the exit code of the first attempt: 0 once verified, else its failure's code.
        self._on_first_result = on_first_result
        self._stop_requested = threading.Event()
        #: The forwards as the last verification of a client found them.
        self.ready_checks: list[ForwardCheck] = []

    # -- bookkeeping ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.log.write(f"--- sshwrap supervisor {self.name} {stamp}: {text}\n")
        self.log.flush()

    def _identity(self) -> Identity:
        if self._identity_given is not None:
            return self._identity_given
        return process_identity()

    def report_first(self, code: int) -> None:
        """Tell whoever waits on the first attempt how it went (once)."""
        callback, self._on_first_result = self._on_first_result, None
        if callback is not None:
            callback(code)

    def request_stop(self) -> None:
        """Ask the loop, from another thread, to stop the client and end (as SIGTERM does)."""
        self._stop_requested.set()
        child = self.child
        # Wakes a loop blocked on the client (_stop_child finishes it); a reaped child's pid
        # may belong to another process already, and is left alone.
        if child is not None and child.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)

    def _check_stop(self) -> None:
        if self._stop_requested.is_set():
            self._stopping = True
            raise Stopping("stop requested")

    def sleep(self, seconds: float) -> None:
        """Sleep, but end the loop at once when a stop is asked."""
        if self._stop_requested.wait(seconds):
            self._check_stop()

    def _update(self, **changes: object) -> None:
        if self.record is None:
            return
        self.record = replace(self.record, **changes)  # type: ignore[arg-type]
        state.write_record(self.paths, self.record)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            return  # already unwinding: a second signal must not interrupt the cleanup
        self._stopping = True
        self._stop_requested.set()
        raise Stopping(signal.Signals(signum).name)

    # -- the client -----------------------------------------------------------------------

    def spawn_client(self, profile: Profile, argv: list[str]) -> Launched:
        """Start the client, with the secret (if any) served through sshwrap's askpass helper
        and a pinned host key in place; the same starter serves every restart."""
        self._check_stop()
        unixsock.clear_stale_listeners(profile, self.say)  # a dead client's socket file
        if self._starter is None:
            self._starter = ClientStarter(profile, self._secret, self.paths.root,
                                          base_env=self.env)
        self.child = self._starter.start(self.name, argv, self.paths.log(self.name),
                                         owned_by_parent=True)
        self._check_stop()  # asked while it was being spawned: request_stop saw no child
        return self.child

    def _wait_client(self, launched: Launched) -> int:
        """Block until the verified client ends; its exit status."""
        returncode = launched.popen.wait()
        self._check_stop()
        self.child = None
        return returncode

    def _settle_credentials(self) -> None:
        """Close the askpass socket of the last start once its client is verified or gone."""
        if self._starter is not None:
            self._starter.settle()

    def _stop_child(self) -> None:
        self._settle_credentials()
        if self.child is not None:
            # Our own child: until we reap it its pid cannot be reused, so signalling is safe.
            stop_group(self.child.pid, timeout=STOP_TIMEOUT)
            self.child.popen.poll()
            self.child = None

    def _failure_reason(self, launched: Launched, returncode: int, profile: Profile) -> str:
        from sshwrap.core.diagnose import diagnose_log

        text = LogReader(launched.log_path, launched.log_offset).read()
        diagnosis = diagnose_log(text, profile)
        if diagnosis is not None:
            return diagnosis.message
        if returncode < 0:
            return f"the client (pid {launched.pid}) was killed by " \
                   f"{signal.Signals(-returncode).name}"
        return f"the client (pid {launched.pid}) exited with status {returncode}"

    # -- the loop -------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> int:
        """Supervise until stopped (exit 0) or failed for good (the failure's exit code).

        ``handle_signals`` (main thread only) makes SIGTERM and SIGINT stop it; a thread of the
        resident supervisor is stopped with ``request_stop`` instead.
        """
        if handle_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        code = int(ExitCode.INTERNAL)
        try:
            code = self._supervise()
        except Stopping:
            self.say("stopping on request")
            if self.on_stop is not None:
                self.on_stop()
            self._stop_child()
            state.remove_record(self.paths, self.name)
            code = int(ExitCode.OK)
        finally:
            self._stop_child()
            self.report_first(code)
        return code

    def _supervise(self) -> int:
        from sshwrap.machine import host_facts

        try:
            profile = self.store.load(self.name)
            facts = host_facts()
            argv = client_argv(profile, facts, self.paths.log(self.name))
        except SshwrapError as error:
            self.say(f"cannot start: {error.message}")
            return int(error.exit_code)
        from sshwrap.runtime.tunnels import expected_forwards

        forwards = expected_forwards(profile, facts)
        if wants_sharing(profile, self.share):
            return SharedTunnel(self, profile, state.profile_hash(profile, argv), forwards).run()
        pid, create_time, own_argv = self._identity()
        failures = restarts = 0
        first = True
        while True:
            launched = self.spawn_client(profile, argv)
            self._begin_attempt(launched, TunnelRecord(
                name=self.name, pid=launched.pid, create_time=launched.create_time,
                argv=launched.argv, profile_hash=state.profile_hash(profile, argv),
                client=profile.client.value, started_at=time.time(), forwards=forwards,
                log_path=str(launched.log_path), log_offset=launched.log_offset,
                supervisor_pid=pid, supervisor_create_time=create_time,
                supervisor_argv=own_argv), first=first)
            try:
                self.ready_checks = wait_ready(
                    launched, profile, forwards,
                    wait=self.first_wait if first else RESTART_READY_WAIT)
            except SshwrapError as error:
                self._check_stop()  # the client ended because a stop was asked
                self._stop_child()
                if is_fatal(error) or (first and not self.foreground):
                    # up reports the first failure itself; a fatal one would only repeat.
                    self._update(phase=Phase.FAILED.value, last_failure=error.message,
                                 failure_code=int(error.exit_code), failure_hint=error.hint,
                                 verified=False)
                    self.say(f"failed: {error.message}")
                    return int(error.exit_code)
                failures += 1
                if is_remote_held(error):
                    reason = (f"{error.message}: the server still holds it from the previous "
                              "session; retrying until it lets go")
                    hint = REMOTE_HELD_HINT
                else:
                    reason, hint = error.message, error.hint
                self._reconnect_later(profile, failures, reason, hint,
                                      int(error.exit_code))
                restarts += 1
                self._update(restarts=restarts)
                continue
            first = False
            self._mark_up(launched)
            up_since = time.monotonic()
            returncode = self._wait_client(launched)
            if time.monotonic() - up_since >= STABLE_AFTER:
                failures = 0
            reason = self._failure_reason(launched, returncode, profile)
            self.say(f"client ended: {reason}")
            if profile.restart is RestartPolicy.NO or (
                    profile.restart is RestartPolicy.ON_FAILURE and returncode == 0):
                if returncode == 0:
                    state.remove_record(self.paths, self.name)
                    return int(ExitCode.OK)
                self._update(phase=Phase.FAILED.value, last_failure=reason, verified=False,
                             failure_code=int(ExitCode.CONNECTION))
                return int(ExitCode.CONNECTION)
            failures += 1
            self._reconnect_later(profile, failures, reason, "", int(ExitCode.CONNECTION))
            restarts += 1
            self._update(restarts=restarts)

    def _mark_up(self, launched: Launched) -> None:
        self._settle_credentials()
        self._update(phase=Phase.UP.value, verified=True, next_retry=None)
        self.say(f"up (client pid {launched.pid})")
        self.report_first(int(ExitCode.OK))

    def _begin_attempt(self, launched: Launched, fresh: TunnelRecord, *, first: bool) -> None:
        """Record the new client, keeping restarts and the last failure of earlier ones."""
        previous = self.record
        self.record = fresh if previous is None else replace(
            previous, pid=launched.pid, create_time=launched.create_time, argv=launched.argv,
            started_at=fresh.started_at, log_offset=launched.log_offset, verified=False,
            next_retry=None)
        self._update(phase=Phase.STARTING.value if first else Phase.RECONNECTING.value)

    def _reconnect_later(self, profile: Profile, failures: int, reason: str, hint: str,
                         code: int) -> None:
        """Record ``reconnecting`` and wait out the backoff, cut short when the path returns."""
        delay = backoff_delay(failures, self.rng)
        self._update(phase=Phase.RECONNECTING.value, verified=False, last_failure=reason,
                     failure_hint=hint, failure_code=code, next_retry=time.time() + delay)
        self.say(f"reconnecting in {delay:.1f} s: {reason}")
        wait_for_path(first_hop(profile), delay, sleep=self.sleep)


def process_identity() -> Identity:
    """This process's pid, create time and command line: what a record checks it by."""
    import psutil

    me = psutil.Process(os.getpid())
    return me.pid, me.create_time(), tuple(me.cmdline())


def wait_for_path(hop: tuple[str, int], delay: float,
                  sleep: Callable[[float], None] = time.sleep) -> bool:
    """Sleep ``delay`` seconds, probing ``hop``: return at once when it answers again after
    having failed; past ``delay``, keep waiting (up to BACKOFF_CAP more) while it is down, so
    that an attempt is not spent on a path known to be cut. True when the path came back."""
    host, port = hop
    deadline = time.monotonic() + delay
    give_up = deadline + BACKOFF_CAP
    saw_down = False
    while True:
        started = time.monotonic()
        reachable = probe(host, port)
        if reachable is False:
            saw_down = True
        elif reachable and saw_down:
            return True
        now = time.monotonic()
        if now >= give_up or (now >= deadline and reachable is not False):
            return False
        sleep(max(0.0, PROBE_INTERVAL - (now - started)))


def run_supervisor(name: str, *, wait: float, foreground: bool,
                   paths: StatePaths | None = None, store: ProfileStore | None = None,
                   stdin: TextIO | None = None, share: bool = False) -> int:
    """Run the supervisor of ``name`` in this process; its exit code."""
    secret = read_secret(stdin)
    supervisor = Supervisor(name, paths or StatePaths.from_env(),
                            store or ProfileStore.from_option(None), first_wait=wait,
                            foreground=foreground, secret=secret, share=share)
    return supervisor.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("name")
    parser.add_argument("--wait", type=float, default=RESTART_READY_WAIT)
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("--share", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.umask(0o077)
    return run_supervisor(args.name, wait=args.wait, foreground=args.foreground,
                          stdin=sys.stdin, share=args.share)


if __name__ == "__main__":
    sys.exit(main())
