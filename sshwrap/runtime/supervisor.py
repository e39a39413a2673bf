"""The per-tunnel supervisor: owns the client, restarts it by the profile's policy, records it.

It runs as a thread of the engine (runtime/engine.py; a systemd unit runs that engine too),
or of a program using the Python API. Whatever ends it, a failure is recorded.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import StrEnum
from types import FrameType
from typing import TextIO

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Profile, RestartPolicy
from sshwrap.errors import ConnectionFailed, ExitCode, ForwardingFailed, SshwrapError
from sshwrap.runtime import state
from sshwrap.runtime.auth import ClientStarter
from sshwrap.runtime.clientowner import ClientOwner, Stopping
from sshwrap.runtime.events import Event
from sshwrap.runtime.freeport import wants_free_ports, with_free_ports
from sshwrap.runtime.identity import Identity, own_identity
from sshwrap.runtime.launch import Launched, client_argv
from sshwrap.runtime.paths import StatePaths
from sshwrap.runtime.restart import (
    REMOTE_HELD_HINT,
    RESTART_READY_WAIT,
    STABLE_AFTER,
    backoff_delay,
    first_hop,
    is_fatal,
    is_remote_held,
    wait_for_path,
)
from sshwrap.runtime.shared import wants_sharing
from sshwrap.runtime.sharedtunnel import SharedTunnel
from sshwrap.runtime.state import ExpectedForward, Mode, TunnelRecord, expected_forwards
from sshwrap.runtime.verify import ForwardCheck, wait_ready
from sshwrap.store import ProfileStore

#: How often a first start chooses new ports when a ``listen = 0`` port was taken meanwhile.
FREE_PORT_RETRIES = 3
#: Told how the first attempt went: None once verified, else its error.
FirstResult = Callable[[SshwrapError | None], None]


class Phase(StrEnum):
    STARTING = "starting"
    UP = "up"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


#: The reason told for entering a state that is not a failure.
_REASONS = {Phase.STARTING.value: "starting the client", Phase.UP.value: "every forward verified"}


class Finished(Exception):
    """The client ended well and the restart policy does not start it again."""





class Supervisor(ClientOwner):
    """Runs one tunnel's client until stopped, restarting it according to ``restart``."""

    def __init__(self, name: str, paths: StatePaths, store: ProfileStore, *,
                 first_wait: float, foreground: bool, secret: str | None = None,
                 log: TextIO = sys.stderr, share: bool = False,
                 env: Mapping[str, str] | None = None, identity: Identity | None = None,
                 on_first_result: FirstResult | None = None) -> None:
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
        #: Told how the first attempt went (None: verified; else its error).
        self._on_first_result = on_first_result
        #: How the record names this tunnel's way of running.
        self.mode = Mode.ENGINE if identity is not None else Mode.PROCESS
        self._stop_requested = threading.Event()
        #: The forwards as the last verification of a client found them.
        self.ready_checks: list[ForwardCheck] = []
        #: Told every state change (the engine publishes it to ``sshwrap events``).
        self.on_event: Callable[[Event], None] | None = None
        #: The profile being run, with the ports chosen for ``listen = 0`` (its hooks are run
        #: on state changes; reload swaps them).
        self.profile: Profile | None = None
        self._phase = "down"
        #: Why the client was ended after a network change (runtime/netwatch.py), until seen.
        self._dropped: str | None = None

    # -- bookkeeping ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.log.write(f"--- sshwrap supervisor {self.name} {stamp}: {text}\n")
        self.log.flush()

    def _identity(self) -> Identity:
        if self._identity_given is not None:
            return self._identity_given
        return own_identity()

    @property
    def secret(self) -> str | None:
        """The secret ``up`` handed over, for the client's authentication."""
        return self._secret

    def first_hop(self) -> tuple[str, int] | None:
        return first_hop(self.profile) if self.profile is not None else None

    def report_first(self, error: SshwrapError | None) -> None:
        """Tell whoever waits on the first attempt how it went (once)."""
        callback, self._on_first_result = self._on_first_result, None
        if callback is not None:
            callback(error)

    def fail(self, error: SshwrapError) -> int:
        """Record the tunnel failed for good by ``error`` (kept until ``up`` or ``down``);
        its exit code."""
        if self.record is None:  # it failed before a client was started: a record anyway
            pid, create_time, own_argv = self._identity()
            self.record = TunnelRecord(
                name=self.name, pid=0, create_time=0.0, argv=(), profile_hash="",
                client="", started_at=time.time(), forwards=(),
                log_path=str(self.paths.log(self.name)), supervisor_pid=pid,
                supervisor_create_time=create_time, supervisor_argv=own_argv,
                mode=self.mode.value)
        self.record = self.record.failed(error)
        state.write_record(self.paths, self.record)
        self.say(f"failed: {error.message}")
        self.announce(Phase.FAILED.value, error.message)
        return int(error.exit_code)

    def _update(self, **changes: object) -> None:
        if self.record is None:
            return
        self.record = replace(self.record, **changes)  # type: ignore[arg-type]
        state.write_record(self.paths, self.record)
        phase = changes.get("phase")
        if isinstance(phase, str):
            self.announce(phase, _REASONS.get(phase) or self.record.last_failure or "")

    def announce(self, to_state: str, reason: str) -> None:
        """Tell a state change (not a repeat of the same state) to the engine's followers,
        and run the profile's hook for it; neither can affect the tunnel."""
        if to_state == self._phase:
            return
        event = Event(time=time.time(), name=self.name, from_state=self._phase,
                      to_state=to_state, reason=reason,
                      pid=self.record.pid if self.record is not None and to_state != "down"
                      else None,
                      restarts=self.record.restarts if self.record is not None else 0)
        self._phase = to_state
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as error:  # a follower's trouble is never the tunnel's
                self.say(f"could not publish a state change: {error}")
        if self.profile is not None:
            from sshwrap.runtime import hooks

            hooks.run_for(self.profile, event, self.env, self.paths.log(self.name))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            return  # already unwinding: a second signal must not interrupt the cleanup
        self._stopping = True
        self._stop_requested.set()
        raise Stopping(signal.Signals(signum).name)

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
        error: SshwrapError | None = None
        try:
            code = self._supervise()
        except Finished:  # the client ended well and the policy does not restart it
            code = int(ExitCode.OK)
        except SshwrapError as failure:  # wherever it came from: kept, and told as itself
            error = failure
            self._stop_child()
            code = self.fail(failure)
        except Stopping:
            self.say("stopping on request")
            if self.on_stop is not None:
                self.on_stop()
            self._stop_child()
            state.remove_record(self.paths, self.name)
            self.announce("down", "stopped on request")
            code = int(ExitCode.OK)
        except Exception as bug:
            error = SshwrapError(f"{self.name}: internal error of its supervisor: "
                                 f"{type(bug).__name__}: {bug}")
            raise
        finally:
            self._stop_child()
            if code != 0 and error is None:
                error = (self.record.failure() if self.record is not None else None) \
                    or SshwrapError(f"{self.name}: supervision ended with status {code}")
            self.report_first(error if code != 0 else None)
        return code

    def _supervise(self) -> int:
        from sshwrap.machine import host_facts

        requested = self.profile = self.store.load(self.name)
        facts = host_facts()
        log_path = self.paths.log(self.name)
        # The record keeps the hash of the profile as written (listen = 0 included), which
        # is what up and status compare it with.
        digest = state.profile_hash(requested, client_argv(requested, facts, log_path))
        profile, argv, forwards = self._compiled(requested, facts)
        if wants_sharing(profile, self.share):
            return SharedTunnel(self, profile, digest, forwards).run()
        pid, create_time, own_argv = self._identity()
        failures = restarts = port_tries = 0
        first = True
        while True:
            launched = self.spawn_client(profile, argv)
            self._begin_attempt(launched, TunnelRecord(
                name=self.name, pid=launched.pid, create_time=launched.create_time,
                argv=launched.argv, profile_hash=digest,
                client=profile.client.value, started_at=time.time(), forwards=forwards,
                log_path=str(launched.log_path), log_offset=launched.log_offset,
                supervisor_pid=pid, supervisor_create_time=create_time,
                supervisor_argv=own_argv, mode=self.mode.value), first=first)
            try:
                self.ready_checks = wait_ready(
                    launched, profile, forwards,
                    wait=self.first_wait if first else RESTART_READY_WAIT)
            except SshwrapError as error:
                self._check_stop()  # the client ended because a stop was asked
                self._stop_child()
                if first and isinstance(error, ForwardingFailed) \
                        and port_tries < FREE_PORT_RETRIES and wants_free_ports(requested):
                    # Someone took a chosen port between the choice and ssh's bind: choose again.
                    port_tries += 1
                    profile, argv, forwards = self._compiled(requested, facts)
                    continue
                if is_fatal(error) or (first and not self.foreground):
                    raise  # up reports the first failure itself; a fatal one would repeat
                failures += 1
                if is_remote_held(error) and not first:
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
            dropped, reason = self._ended(launched, returncode, profile)
            failures = 0 if dropped else failures + 1  # dropped: no backoff, only the path
            self._reconnect_later(profile, failures, reason, "", int(ExitCode.CONNECTION))
            restarts += 1
            self._update(restarts=restarts)

    def _ended(self, launched: Launched, returncode: int, profile: Profile) -> tuple[bool, str]:
        """After the verified client ended: (dropped after a network change, why it ended)
        when the policy restarts it; else return through Finished or fail for good."""
        dropped, self._dropped = self._dropped, None
        reason = dropped or self._failure_reason(launched, returncode, profile)
        self.say(f"client ended: {reason}")
        if dropped:  # ssh may exit 0 on our SIGTERM: a dropped connection is a failure
            returncode = returncode or 255
        if profile.restart is RestartPolicy.NO or (
                profile.restart is RestartPolicy.ON_FAILURE and returncode == 0):
            if returncode == 0:
                state.remove_record(self.paths, self.name)
                self.announce("down", reason)
                raise Finished
            raise ConnectionFailed(reason, hint=f"sshwrap up {self.name}")
        return dropped is not None, reason

    def _compiled(self, requested: Profile, facts: HostFacts,
                  ) -> tuple[Profile, list[str], tuple[ExpectedForward, ...]]:
        """The profile with ports chosen for ``listen = 0``, its argv and its forwards."""
        profile = self.profile = with_free_ports(requested, facts)
        return (profile, client_argv(profile, facts, self.paths.log(self.name)),
                expected_forwards(profile, facts))

    def _mark_up(self, launched: Launched) -> None:
        self._settle_credentials()
        self._update(phase=Phase.UP.value, verified=True, next_retry=None)
        self.say(f"up (client pid {launched.pid})")
        self.report_first(None)

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
        delay = backoff_delay(failures, self.rng) if failures else 0.0
        self._update(phase=Phase.RECONNECTING.value, verified=False, last_failure=reason,
                     failure_hint=hint, failure_code=code, next_retry=time.time() + delay)
        self.say(f"reconnecting in {delay:.1f} s: {reason}")
        wait_for_path(first_hop(profile), delay, sleep=self.sleep)

