"""The one restart policy of the engine, for tunnels and shared masters alike: which
failures are retried, how long to back off, and probing the path while waiting."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

from sshwrap.core.model import Profile
from sshwrap.errors import AuthFailed, ForwardingFailed, InvalidInput, MissingBinary, SshwrapError

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
