"""Events over the engine's socket: streamed to each follower, and followed by a client."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sshwrap.runtime.supervise.events import Event
from sshwrap.runtime.system.paths import StatePaths

if TYPE_CHECKING:
    from sshwrap.runtime.system.wire import Channel

#: How often a follower with no engine to talk to looks for one again.
RETRY_INTERVAL = 0.2


def stream_events(engine: Any, channel: Channel) -> None:
    """Send every event of ``engine`` (the ResidentSupervisor, which imports this module) from
    now on to a follower, until it hangs up or the engine exits."""

    inbox = engine.events.subscribe()
    with engine.lock:
        engine.followers += 1
    try:
        channel.send({"subscribed": True})
        while True:
            try:
                event = inbox.get(timeout=1.0)
            except queue.Empty:
                if channel.hung_up(0):
                    return
                continue
            if event is None:
                channel.send({"exiting": True})
                return
            channel.send({"event": event.to_json()})
    except OSError:
        return  # the follower is gone
    finally:
        engine.events.unsubscribe(inbox)
        with engine.lock:
            engine.followers -= 1
            engine.followers_done.notify_all()


# -- the follower's side ------------------------------------------------------------------


def _subscribe(paths: StatePaths) -> socket.socket | None:
    """A connection subscribed to the engine's events; None when no engine answers."""
    from sshwrap.runtime.engine import client, daemon
    from sshwrap.runtime.system.rendezvous import CONNECT_WAIT

    try:
        conn = client.connect(str(daemon.socket_path(paths)), CONNECT_WAIT)
    except OSError:
        return None
    try:
        client.send(conn, {"op": "events"})
    except OSError:
        conn.close()
        return None
    conn.settimeout(None)  # events come when they come
    return conn


def follow(paths: StatePaths | None = None, names: Sequence[str] = (), *,
           start_engine: bool = True, environ: Mapping[str, str] | None = None,
           on_wait: Callable[[], None] | None = None) -> Iterator[Event]:
    """Every state change of the tunnels ``names`` (all when empty) from now on, as the
    engine of ``paths`` makes them, until the caller stops iterating.

    With ``start_engine`` an engine is started when none runs, so that tunnels started
    later are followed from their first state. When the engine exits (``down --all``, or
    idle), nothing is started again: the follower waits for the next engine, telling
    ``on_wait`` once each time it begins to wait.
    """
    import os

    from sshwrap.runtime.engine import daemon

    paths = paths or StatePaths.from_env()
    wanted = set(names)
    if start_engine:
        paths.ensure()
        daemon.ensure_running(paths, dict(os.environ if environ is None else environ))
    waiting = False
    while True:
        conn = _subscribe(paths)
        if conn is None:
            if not waiting and on_wait is not None:
                on_wait()
            waiting = True
            time.sleep(RETRY_INTERVAL)
            continue
        waiting = False
        from sshwrap.runtime.engine.client import frames

        with conn:
            for frame in frames(conn):
                if frame.get("exiting"):
                    break
                if "event" not in frame:
                    continue
                event = Event.from_json(frame["event"])
                if not wanted or event.name in wanted:
                    yield event
        time.sleep(RETRY_INTERVAL)  # an exiting engine may still accept for a moment
