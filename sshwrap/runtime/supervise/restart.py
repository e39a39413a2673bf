"""The one restart loop of the engine, for tunnels, shared tunnels and masters alike: which
failures are retried, how long to back off, probing the path while waiting, what is recorded."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sshwrap.core.model import Profile, RestartPolicy
from sshwrap.errors import (
    AuthFailed,
    ConnectionFailed,
    ExitCode,
    ForwardingFailed,
    InvalidInput,
    MissingBinary,
    SshwrapError,
    StateUnusable,
)

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
#: A client that stayed up this long starts the backoff over from BACKOFF_START.
STABLE_AFTER = 60.0
#: While waiting out a backoff the first hop is probed this often, to retry as soon as it is back.
PROBE_INTERVAL = 0.25
#: A restart attempt (not the first start, which uses up's --wait) gets this long to verify.
RESTART_READY_WAIT = 30.0
#: Failures that the same attempt would meet again: no retry loop, the tunnel goes failed.
FATAL_ERRORS: tuple[type[SshwrapError], ...] = (AuthFailed, InvalidInput, MissingBinary)
REMOTE_HELD_HINT = ("the server keeps a dead session's ports until it notices; set "
                    "ClientAliveInterval 5 and ClientAliveCountMax 2 in its sshd_config")


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


# -- the loop -----------------------------------------------------------------------------


class Phase(StrEnum):
    STARTING = "starting"
    UP = "up"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


@dataclass(frozen=True)
class Ended:
    """How a verified attempt ended."""

    reason: str
    #: 0 when it ended well (``restart = "on-failure"`` does not start it again).
    status: int = 255
    #: Ended on purpose after a network change: restarted at once, as soon as a path exists.
    dropped: bool = False
    #: Its restarts are paced by someone else (a shared tunnel's: its master's supervisor).
    paced: bool = False


class Attempts(Protocol):
    """What the restart loop keeps running: a tunnel's own client (runtime/supervise/supervisor.py),
    a tunnel's forwards on a shared master (runtime/supervise/sharedtunnel.py), or a shared
    connection's master (runtime/supervise/masters.py)."""

    name: str

    @property
    def policy(self) -> RestartPolicy: ...
    def hop(self) -> tuple[str, int]:
        """The first hop, probed while a backoff is waited out."""
    def start(self, phase: Phase, wait: float) -> Mapping[str, object]:
        """Start an attempt (recorded under ``phase``) and verify it within ``wait``
        seconds; what its record says once up. A failure raises its error."""
    def watch(self) -> Ended | None:
        """Block until the verified attempt ends; None when it was ended because nothing
        needs it any more. A stop asked from elsewhere raises ``Stopping``."""
    def stop(self) -> None:
        """End what is left of an attempt that failed."""
    def update(self, **changes: object) -> None:
        """Apply ``changes`` to the record (telling the followers of a new phase); kept in
        memory even when the state dir cannot take them (StateUnusable is raised then)."""
    def say(self, text: str) -> None: ...
    def sleep(self, seconds: float) -> None:
        """Sleep, raising ``Stopping`` at once when a stop is asked."""
    def verified(self) -> None:
        """Told once an attempt is up and recorded so."""
    def wanted(self) -> bool:
        """Whether it is still needed after a wait (a master: some tunnel uses it)."""


def restarts_after(policy: RestartPolicy, status: int) -> bool:
    """Whether ``policy`` starts again what ended with ``status``."""
    return policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and status != 0)


class ProfileAttempts:
    """The part of Attempts that a tunnel's attempts derive from its profile alone (its own
    client, or its forwards on a shared connection)."""

    profile: Profile

    @property
    def policy(self) -> RestartPolicy:
        return self.profile.restart

    def hop(self) -> tuple[str, int]:
        return first_hop(self.profile)


class RestartLoop:
    """Keeps one thing running by its restart policy: the first attempt gets up's wait and
    its failure is reported (unless ``retry_first``: run in the foreground, where nobody waits
    on it); later attempts get RESTART_READY_WAIT; fatal failures end it; other failures back
    off with jitter, cut short when the path comes back, and start over after a stable run."""

    def __init__(self, attempts: Attempts, *, first_wait: float, retry_first: bool,
                 restart_wait: float = RESTART_READY_WAIT,
                 rng: random.Random | None = None) -> None:
        self.attempts = attempts
        self.first_wait = first_wait
        self.restart_wait = restart_wait
        self.retry_first = retry_first
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def run(self) -> Ended | None:
        """Until it ends well and the policy does not restart it (that end returned), or
        nothing wants it any more (None). A failure for good is raised; so is ``Stopping``."""
        attempts = self.attempts
        failures = restarts = 0
        first = True
        while True:
            try:
                up = attempts.start(Phase.STARTING if first else Phase.RECONNECTING,
                                    self.first_wait if first else self.restart_wait)
                # An attempt that cannot be recorded up has failed: nobody could see it.
                attempts.update(phase=Phase.UP.value, verified=True, next_retry=None, **up)
            except SshwrapError as error:
                attempts.sleep(0)  # the attempt failed because a stop was asked: stop
                attempts.stop()
                if is_fatal(error) or (first and not self.retry_first):
                    raise  # up reports the first failure itself; a fatal one would repeat
                failures += 1
                reason, hint = error.message, error.hint
                if is_remote_held(error) and not first:
                    reason = (f"{error.message}: the server still holds it from the previous "
                              "session; retrying until it lets go")
                    hint = REMOTE_HELD_HINT
                restarts += 1
                if not self._later(failures, reason, hint, int(error.exit_code), restarts):
                    return None
                continue
            first = False
            attempts.verified()
            up_since = time.monotonic()
            ended = attempts.watch()
            if ended is None:
                return None
            if not restarts_after(attempts.policy, ended.status):
                if ended.status == 0:
                    return ended
                raise ConnectionFailed(ended.reason, hint=f"sshwrap up {attempts.name}")
            if ended.dropped or ended.paced:
                failures = 0  # after a network change, or paced elsewhere: no backoff
            elif time.monotonic() - up_since >= STABLE_AFTER:
                failures = 1  # a stable run starts the backoff over
            else:
                failures += 1
            restarts += 1
            if not self._later(failures, ended.reason, "", int(ExitCode.CONNECTION), restarts,
                               wait=not ended.paced):
                return None

    def _later(self, failures: int, reason: str, hint: str, code: int, restarts: int, *,
               wait: bool = True) -> bool:
        """Record ``reconnecting`` and wait out the backoff, cut short when the path returns;
        whether it is still wanted."""
        attempts = self.attempts
        delay = backoff_delay(failures, self.rng) if failures else 0.0
        unusable = _recorded(attempts, phase=Phase.RECONNECTING.value, verified=False,
                             last_failure=reason, failure_hint=hint, failure_code=code,
                             next_retry=time.time() + delay)
        if unusable is not None:
            # Nothing can be recorded (a full or read-only state dir): that is the failure
            # now, told as one (its event, its on_failed hook) and kept in memory, where the
            # engine's status reads it; the attempts go on, and recover once it is writable.
            reason, hint, code = unusable.message, unusable.hint, int(unusable.exit_code)
            failure = {"last_failure": reason, "failure_hint": hint, "failure_code": code}
            _recorded(attempts, phase=Phase.FAILED.value, verified=False, next_retry=None,
                      **failure)
            _recorded(attempts, phase=Phase.RECONNECTING.value,
                      next_retry=time.time() + delay, **failure)
        attempts.say(f"reconnecting in {delay:.1f} s: {reason}")
        if wait:
            wait_for_path(attempts.hop(), delay, sleep=attempts.sleep)
        # Counted once waited out: the event of entering reconnecting tells the count before.
        _recorded(attempts, restarts=restarts)
        return attempts.wanted()


def _recorded(attempts: Attempts, **changes: object) -> StateUnusable | None:
    """Apply ``changes`` (the attempts keep them in memory even when the state dir cannot
    take them); why they could not be written, if they could not."""
    try:
        attempts.update(**changes)
    except StateUnusable as error:
        return error
    return None
