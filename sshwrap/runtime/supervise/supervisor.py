"""The per-tunnel supervisor: owns the client, restarts it by the profile's policy, records it.

It runs the one restart loop (supervise/restart.py) in a thread of the engine or of a program
using the Python API. Whatever ends it, a failure is recorded.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import FrameType
from typing import TextIO

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.model import Profile
from sshwrap.errors import ExitCode, ForwardingFailed, SshwrapError, StateUnusable
from sshwrap.runtime.client.auth import ClientStarter
from sshwrap.runtime.client.launch import Launched, find_program
from sshwrap.runtime.client.questions import AskQuestion
from sshwrap.runtime.observe.verify import ForwardCheck, ReadyWatch, wait_ready
from sshwrap.runtime.supervise.clientowner import ClientOwner, Stopping
from sshwrap.runtime.supervise.events import Event
from sshwrap.runtime.supervise.farside import own_control, prove_forwards
from sshwrap.runtime.supervise.hooks import Hooks
from sshwrap.runtime.supervise.hosting import Hosting
from sshwrap.runtime.supervise.restart import Ended, Phase, ProfileAttempts, RestartLoop, first_hop
from sshwrap.runtime.supervise.shared import wants_sharing
from sshwrap.runtime.supervise.sharedtunnel import SharedTunnel
from sshwrap.runtime.system import state
from sshwrap.runtime.system.freeport import wants_free_ports, with_free_ports
from sshwrap.runtime.system.identity import Identity, own_identity
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import ExpectedForward, Mode, TunnelRecord, expected_forwards
from sshwrap.store import ProfileStore

__all__ = ["Phase", "Stopping", "Supervisor"]

#: How often a first start chooses new ports when a ``listen = 0`` port was taken meanwhile.
FREE_PORT_RETRIES = 3
#: How often a failure the state dir could not take is written again.
UNWRITTEN_RETRY = 1.0
#: Told how the first attempt went: None once verified, else its error.
FirstResult = Callable[[SshwrapError | None], None]
#: The reason told for entering a state that is not a failure.
_REASONS = {Phase.STARTING.value: "starting the client", Phase.UP.value: "every forward verified"}


class Supervisor(ClientOwner):
    """Runs one tunnel's client until stopped, restarting it according to ``restart``."""

    def __init__(self, profile: Profile, paths: StatePaths, store: ProfileStore | None = None,
                 *, first_wait: float, foreground: bool, secret: str | None = None,
                 log: TextIO = sys.stderr, share: bool = False,
                 env: Mapping[str, str] | None = None, identity: Identity | None = None,
                 on_first_result: FirstResult | None = None, ask: AskQuestion | None = None,
                 hosting: Hosting | None = None, hooks: Hooks | None = None,
                 ready: ReadyWatch | None = None) -> None:
        self.name = profile.name
        self.requested = profile  # parsed once by whoever asked (``listen = 0`` unchosen)
        self.paths = paths.ensure()
        #: Where the profile was found: a reload reads it again from there.
        self.store = store
        self.first_wait = first_wait
        self.foreground = foreground
        self._secret = secret  # for the client's authentication; never written anywhere
        self._starter: ClientStarter | None = None
        self._ask = ask  # the server's questions on the first start (the API's prompt=)
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
        #: The engine's shared connections, hooks and listener reads, when it runs it.
        self.hosting, self.hooks = hosting, hooks if hooks is not None else Hooks()
        self.ready = ready if ready is not None else ReadyWatch()
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
        #: Why the client was ended after a network change (supervise/netwatch.py), until seen.
        self._dropped: str | None = None
        #: Held while the record is changed and written: the tunnel's thread and a reload's
        #: note (runtime/engine/reload.py) each change the latest record, and none is lost.
        self._record_lock = threading.Lock()
        #: Why the latest record is in memory only (the state dir could not take it).
        self.unwritten: StateUnusable | None = None

    # -- bookkeeping ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        # The log may be on a full disk: what is said is also kept in the record and events.
        with contextlib.suppress(OSError, ValueError):
            self.log.write(f"--- sshwrap supervisor {self.name} {stamp}: {text}\n")
            self.log.flush()

    def _identity(self) -> Identity:
        return self._identity_given if self._identity_given is not None else own_identity()

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
            fresh = _unstarted(self.paths, self.name, self._identity(), self.mode)
            with self._record_lock:
                self.record = self.record or fresh
        try:
            self.amend(lambda record: record.failed(error))
        except StateUnusable as unusable:  # kept in memory; written once it can be
            self.unwritten = unusable
        self.say(f"failed: {error.message}")
        self.announce(Phase.FAILED.value, error.message)
        return int(error.exit_code)

    def amend(self, change: Callable[[TunnelRecord], TunnelRecord]) -> TunnelRecord | None:
        """Change the latest record and write it, one writer at a time (the tunnel's thread,
        a reload); the record as written, None when there is none yet. A state dir that
        cannot take it raises StateUnusable, the change kept in memory all the same (the
        engine's status reads it there)."""
        with self._record_lock:
            if self.record is None:
                return None
            self.record = change(self.record)
            try:
                state.write_record(self.paths, self.record)
            except StateUnusable as unusable:
                self.unwritten = unusable
                raise
            self.unwritten = None
            return self.record

    def begin(self, fresh: TunnelRecord, **changes: object) -> None:
        """Record ``changes`` on ``fresh`` if there is no record yet, else on the latest (a
        new attempt keeps the restarts and the last failure of earlier ones)."""
        with self._record_lock:
            if self.record is None:
                self.record = fresh
        self._update(**changes)

    def _update(self, **changes: object) -> None:
        """Apply ``changes`` and tell a new phase; told even when the state dir cannot take
        the record (StateUnusable is raised after): the engine shows what is in memory."""
        unusable: StateUnusable | None = None
        try:
            self.amend(lambda latest: replace(latest, **changes))  # type: ignore[arg-type]
        except StateUnusable as error:
            unusable = error
        record, phase = self.record, changes.get("phase")
        if record is not None and isinstance(phase, str):
            self.announce(phase, _REASONS.get(phase) or record.last_failure or "")
        if unusable is not None:
            raise unusable

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
            self.hooks.run_for(self.profile, event, self.env, self.paths.log(self.name),
                               self.store.dirs if self.store is not None else ())

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            return  # already unwinding: a second signal must not interrupt the cleanup
        self._stopping = True
        self._stop_requested.set()
        raise Stopping(signal.Signals(signum).name)

    # -- running it -------------------------------------------------------------------------

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
        except Exception as bug:  # a bug of its own: a failure kept like any other
            error = SshwrapError(f"{self.name}: internal error of its supervisor: "
                                 f"{type(bug).__name__}: {bug}",
                                 hint=f"see 'sshwrap logs {self.name}'; 'sshwrap up "
                                      f"{self.name}' starts it again")
            self._stop_child()
            code = self.fail(error)
        finally:
            self._stop_child()
            if code != 0 and error is None:
                error = (self.record.failure() if self.record is not None else None) \
                    or SshwrapError(f"{self.name}: supervision ended with status {code}")
            self.report_first(error if code != 0 else None)
        self._keep_unwritten()
        return code

    def _keep_unwritten(self) -> None:
        """A failure the state dir could not take: in the engine, the thread stays (its
        record in memory is what status shows) and writes it once it can, until stopped."""
        if self.mode is not Mode.ENGINE:
            return
        while self.unwritten is not None and not self._stop_requested.wait(UNWRITTEN_RETRY):
            with contextlib.suppress(StateUnusable):
                self.amend(lambda record: record)
        if self.unwritten is not None:  # stopped first: nothing of it is kept
            state.remove_record(self.paths, self.name)

    def _supervise(self) -> int:
        from sshwrap.machine import host_facts

        requested = self.profile = self.requested
        facts = host_facts()
        # The record keeps the hash of the profile as written (listen = 0 included), which
        # is what up and status compare it with.
        digest = state.profile_hash(requested, facts, find_program(requested.client))
        attempts: OwnClient | SharedTunnel
        if wants_sharing(requested, self.share):
            profile, forwards = with_ports(self, requested, facts)
            attempts = SharedTunnel(self, profile, digest, forwards)
        else:
            attempts = OwnClient(self, requested, facts, digest)
        loop = RestartLoop(attempts, first_wait=self.first_wait, retry_first=self.foreground,
                           rng=self.rng)
        try:
            ended = loop.run()
        except SshwrapError:
            attempts.leave()
            raise
        if ended is not None:  # it ended well and the policy does not start it again
            state.remove_record(self.paths, self.name)
            self.announce("down", ended.reason)
        return int(ExitCode.OK)


def _unstarted(paths: StatePaths, name: str, identity: Identity, mode: Mode) -> TunnelRecord:
    """The record of a tunnel whose client was never started."""
    pid, create_time, own_argv = identity
    return TunnelRecord(
        name=name, pid=0, create_time=0.0, argv=(), profile_hash="", client="",
        started_at=time.time(), forwards=(), log_path=str(paths.log(name)),
        supervisor_pid=pid, supervisor_create_time=create_time, supervisor_argv=own_argv,
        mode=mode.value)


def record_not_started(paths: StatePaths, name: str, error: SshwrapError,
                       identity: Identity) -> None:
    """Keep ``error`` as the failure of a tunnel the engine could not even give a
    supervisor (its profile did not load), as a supervisor keeps its own."""
    state.write_record(paths.ensure(), _unstarted(paths, name, identity, Mode.ENGINE)
                       .failed(error))


def with_ports(supervisor: Supervisor, requested: Profile, facts: HostFacts,
               ) -> tuple[Profile, tuple[ExpectedForward, ...]]:
    """The profile with ports chosen for ``listen = 0`` (the one the supervisor runs) and
    its forwards."""
    profile = supervisor.profile = with_free_ports(requested, facts)
    return profile, expected_forwards(profile, facts)


class OwnClient(ProfileAttempts):
    """What the restart loop runs for a tunnel with a client of its own."""

    def __init__(self, supervisor: Supervisor, requested: Profile, facts: HostFacts,
                 digest: str) -> None:
        self.sup = supervisor
        self.name = supervisor.name
        self.requested = requested
        self.facts = facts
        self.digest = digest
        self.profile, self.forwards = with_ports(supervisor, requested, facts)
        self.launched: Launched | None = None
        self.port_tries = 0
        self.say, self.sleep = supervisor.say, supervisor.sleep
        self.update, self.stop = supervisor._update, supervisor._stop_child

    def start(self, phase: Phase, wait: float) -> Mapping[str, object]:
        sup = self.sup
        while True:
            log = sup.paths.log(self.name)
            control = own_control(sup.paths, self.profile)
            spec = LaunchSpec(log_path=str(log),
                              control_path=None if control is None else str(control))
            launched = self.launched = sup.spawn_client(self.profile, self.facts, spec, log)
            pid, create_time, own_argv = sup._identity()
            sup.begin(TunnelRecord(
                name=self.name, pid=launched.pid, create_time=launched.create_time,
                argv=launched.argv, profile_hash=self.digest,
                client=self.profile.client.value, started_at=time.time(),
                forwards=self.forwards, log_path=str(launched.log_path),
                log_offset=launched.log_offset, supervisor_pid=pid,
                supervisor_create_time=create_time, supervisor_argv=own_argv, mode=sup.mode.value),
                pid=launched.pid, create_time=launched.create_time, argv=launched.argv,
                started_at=time.time(), log_offset=launched.log_offset, verified=False,
                next_retry=None, phase=phase.value)
            try:
                sup.ready_checks = wait_ready(launched, self.profile, self.forwards, wait=wait,
                                              paused=sup.asking_time, ready=sup.ready)
            except ForwardingFailed:
                if phase is not Phase.STARTING or self.port_tries >= FREE_PORT_RETRIES \
                        or not wants_free_ports(self.requested):
                    raise
                # Someone took a chosen port between the choice and ssh's bind: choose again.
                sup.sleep(0)
                sup._stop_child()
                self.port_tries += 1
                self.profile, self.forwards = with_ports(sup, self.requested, self.facts)
                continue
            sup._settle_credentials()
            proven = prove_forwards(self.profile, self.forwards, control, launched.log_path,
                                    wait=wait)
            sup.ready_checks = [replace(c, detail=f.far_side) if f.far_side else c
                                for c, f in zip(sup.ready_checks, proven, strict=True)]
            return {"forwards": proven}

    def watch(self) -> Ended:
        sup, launched = self.sup, self.launched
        assert launched is not None  # noqa: S101 - watched only once started
        returncode = sup._wait_client(launched)
        dropped, sup._dropped = sup._dropped, None
        reason = dropped or sup._failure_reason(launched, returncode, self.profile)
        sup.say(f"client ended: {reason}")
        # ssh may exit 0 on our SIGTERM: a dropped connection is a failure
        return Ended(reason, (returncode or 255) if dropped else returncode,
                     dropped=dropped is not None)

    def verified(self) -> None:
        if self.launched is not None:
            self.sup.say(f"up (client pid {self.launched.pid})")
        self.sup.report_first(None)

    def wanted(self) -> bool:
        return True

    def leave(self) -> None:
        """Nothing to leave: the supervisor stops the client and records the failure."""

