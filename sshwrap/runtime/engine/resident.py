"""The engine: one process per state dir runs every tunnel, each in a thread of its own, and
the masters of shared connections, each in a thread too.

Started on demand (runtime/engine/daemon.py), it ends once it has run nothing for ``IDLE_EXIT``
seconds, or on ``down --all``; units run it in the foreground (runtime/engine/foreground.py). It
knows nothing of the command line: the commands it serves besides its own (the express lane
of ``up``) are registered by the composition root, ``python -m sshwrap --engine``
(sshwrap/__main__.py). A first start's failure is answered as data (runtime/system/wire.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sshwrap.core.model import Profile
from sshwrap.errors import ExitCode, SshwrapError
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.engine.daemon import STOP_JOIN, socket_path
from sshwrap.runtime.observe.readywatch import ReadyWatch
from sshwrap.runtime.observe.statusmemory import StatusMemory
from sshwrap.runtime.supervise.events import EventBus
from sshwrap.runtime.supervise.hooks import Hooks
from sshwrap.runtime.supervise.hosting import Hosting
from sshwrap.runtime.supervise.shared import master_paths
from sshwrap.runtime.supervise.supervisor import Supervisor, record_not_started
from sshwrap.runtime.system import logs
from sshwrap.runtime.system.identity import own_identity
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.protocol import (
    ENGINE_REQUESTS,
    Served,
    bad_request,
    checked_request,
    parse_request,
)
from sshwrap.runtime.system.wire import (
    REPLY_TIMEOUT,
    REQUEST_DEADLINE,
    Channel,
    error_data,
    hang_up,
    read_line,
    serve_connections,
)
from sshwrap.store import ProfileStores

#: With no tunnel to supervise for this long, the engine exits.
IDLE_EXIT = 300.0


@dataclass
class Tunnel:
    supervisor: Supervisor
    thread: threading.Thread
    #: The request that started it: a reload starts it again with the same one.
    message: dict[str, Any] | None = None


class ResidentSupervisor:
    """Accepts requests on the socket; runs each tunnel's Supervisor in a thread of its own."""
    idle_exit = IDLE_EXIT  # the foreground engine never exits when idle

    def __init__(self, paths: StatePaths, commands: Mapping[str, Served] | None = None) -> None:
        self.paths = paths
        self.commands = dict(commands or {})
        self.identity = own_identity()
        self.tunnels: dict[str, Tunnel] = {}
        self.lock = threading.Lock()
        self.quit = threading.Event()
        self.idle_since = time.monotonic()
        self.serving = 0  # commands under way: not idle while one runs
        #: State changes of every tunnel, for ``sshwrap events``; a follower does not keep
        #: the engine from exiting when idle.
        self.events = EventBus()
        self.followers = 0
        self.followers_done = threading.Condition(self.lock)
        self._reload_asked = threading.Event()
        #: Set once it has stopped its tunnels and let go of its lock (main's ``lock_fd``):
        #: an asker held until it exits (``down --all``) goes then, before the hooks' drain.
        self.released = threading.Event()
        self.lock_fd: int | None = None
        #: Shared connections' masters (supervised in its threads too) and its tunnels' hooks.
        self.hosting, self.hooks = Hosting(paths.root, start_master), Hooks()
        #: The listener reads its tunnels' verifications and its commands' checks share.
        self.ready = ReadyWatch()
        #: Its askers' profile stores: a profile parsed once while its file stays the same.
        self.stores = ProfileStores()
        #: What its statuses compiled and found, for the next one (usecases/status.py).
        self.status_memory = StatusMemory()
        #: Every log of the state dir under its cap: ours, the tunnels', the masters'.
        self.logs = logs.LogKeeper(lambda: [daemon.log_path(paths), *logs.logs_in(
            paths.logs, master_paths(paths).logs)], logs.cap_from_env(os.environ), self.say)

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with contextlib.suppress(OSError, ValueError):  # its log may be on a full disk
            sys.stderr.write(f"--- sshwrap resident supervisor {os.getpid()} {stamp}: "
                             f"{text}\n")
            sys.stderr.flush()

    def serve(self, listener: socket.socket) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.quit.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self._reload_asked.set())
        from sshwrap.runtime.supervise.netwatch import NetWatch

        watch = NetWatch(self._network_changed).start()
        self.say("serving")
        serve_connections(listener, self._handle, keep_on=self._keep_serving, say=self.say)
        # Nobody is answered any more: refuse new askers at once (they start a new engine,
        # once this one has let go of the lock), rather than leave them waiting.
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.paths).unlink()
        watch.stop()
        self._stop_all()
        self._end_followers()
        from sshwrap.runtime.supervise.shared import tidy_control_dir

        tidy_control_dir(self.paths)  # still holding the lock (ours, or foreground's)
        fd, self.lock_fd = self.lock_fd, None
        if fd is not None:
            os.close(fd)  # a new engine may start while the hooks drain
        self.released.set()
        # The tunnels' on_down hooks, given a few seconds, then ended with everything they
        # started: none outlives us. Nobody waits on them any more.
        self.hooks.drain()
        self.say("exited")
        return 0

    def _keep_serving(self) -> bool:
        """Between connections: a reload asked by SIGHUP started (off this thread); False
        once asked to quit, or idle for ``idle_exit``."""
        self.logs.tick()  # a busy tunnel's log, cut in place
        if self._reload_asked.is_set():
            self._reload_asked.clear()
            threading.Thread(target=self._reload_on_signal, name="reload", daemon=True).start()
        with self.lock:
            if not self.tunnels and not self.serving \
                    and time.monotonic() - self.idle_since >= self.idle_exit:
                self.say(f"nothing supervised for {self.idle_exit:g} s: exiting")
                return False
        return not self.quit.is_set()

    def _network_changed(self, change: Any) -> None:
        """Re-verify every tunnel and every shared connection's master at once
        (runtime/supervise/netwatch.py) instead of waiting for keep-alives to time out."""
        from sshwrap.runtime.supervise import netwatch

        with self.lock:
            supervisors = [tunnel.supervisor for tunnel in self.tunnels.values()]
        masters = self.hosting.masters()  # their tunnels follow them back
        if supervisors or masters:
            dropped = netwatch.recheck([*supervisors, *masters], change)
            self.say(f"{change.reason}: {len(supervisors)} tunnel(s) and {len(masters)} "
                     f"shared connection(s) re-verified, {len(dropped)} restarted")

    # -- requests ---------------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        from sshwrap.runtime.system.sockets import peer_is_same_user

        try:
            with conn:
                if not peer_is_same_user(conn):
                    return
                try:
                    message = self._read_request(conn)
                except SshwrapError as error:
                    conn.sendall(json.dumps({"error": error_data(error)}).encode() + b"\n")
                    hang_up(conn)
                    return
                # The request is in: what follows may take long (an up, a follower), but a
                # reply nobody reads must not hold a thread for ever.
                conn.settimeout(REPLY_TIMEOUT)
                self._dispatch(message, conn)
        except OSError as error:
            self.say(f"a request failed: {type(error).__name__}")  # never its content
        except Exception as error:  # a bug of one request must not end the engine
            self.say(f"a request failed: internal error: {type(error).__name__}: {error}")

    def _read_request(self, conn: socket.socket) -> dict[str, Any]:
        """The request on ``conn``, read within ``REQUEST_DEADLINE`` and checked
        (runtime/system/protocol.py); InvalidInput when it is none."""
        line = read_line(conn, REQUEST_DEADLINE)
        known = {**ENGINE_REQUESTS, **{op: c.fields for op, c in self.commands.items()}}
        return parse_request(line, known)

    def _dispatch(self, message: dict[str, Any], conn: socket.socket) -> None:
        op = message["op"]
        if op == "events":
            from sshwrap.runtime.engine.eventstream import stream_events

            stream_events(self, Channel(conn))
            return
        if op == "reload":
            from sshwrap.runtime.engine.reload import reload_tunnels

            self._serve(lambda _m, channel, engine: channel.send(
                reload_tunnels(engine)), message, Channel(conn))
            return
        served = self.commands.get(op)
        if served is not None:
            self._serve(served.handler, message, Channel(conn))
            return
        try:
            answer = self._answer(message)
        except SshwrapError as error:
            answer = {"error": error_data(error)}
        except OSError as error:  # out of descriptors, say: told, and served on
            answer = {"error": error_data(SshwrapError(
                f"the engine could not serve {op!r}: {error.strerror or error}",
                hint=f"see {daemon.log_path(self.paths)}"))}
        conn.sendall(json.dumps(answer).encode() + b"\n")

    def _serve(self, command: Callable[..., None], message: dict[str, Any],
               channel: Channel) -> None:
        with self.lock:
            if self.quit.is_set():
                channel.send({"exiting": True})  # the asker starts a new engine
                return
            self.serving += 1
        try:
            command(message, channel, self)
        finally:
            with self.lock:
                self.serving -= 1
                self.idle_since = time.monotonic()

    def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "followers": self.followers}
        if op == "start":
            return self.start(message)
        if op == "stop":
            return {"stopped": self.stop(message["name"])}
        if op == "quit":
            with self.lock:
                if message.get("only_if_idle") and self.tunnels:
                    return {"quitting": False}
                self.quit.set()
            return {"quitting": True}
        raise bad_request("unknown request", key="op")

    def start(self, message: dict[str, Any], profile: Profile | None = None) -> dict[str, Any]:
        """Start supervising a tunnel, with ``profile`` or the one of that name in the asker's
        profile directories, loaded here once; the first attempt's exit code (0: verified),
        its error as data when it failed, its forwards as found when verified."""
        from queue import Empty, Queue

        message = checked_request(message, ENGINE_REQUESTS)  # from this process too
        name = message["name"]
        store = self.stores.get(Path(d) for d in message["dirs"])
        try:
            profile = profile or store.load(name)
        except SshwrapError as failure:  # kept as the tunnel's failure, as a failed start is
            record_not_started(self.paths, name, failure, self.identity)
            return {"code": int(failure.exit_code), "error": error_data(failure)}
        with self.lock:
            previous = self.tunnels.get(name)
        if previous is not None:  # a stop of it is still under way: let it finish first
            previous.supervisor.request_stop()
            previous.thread.join(STOP_JOIN)
            if previous.thread.is_alive():
                return {"code": int(ExitCode.INTERNAL), "error": error_data(SshwrapError(
                    f"{name}: its previous supervision did not end within {STOP_JOIN:g} s"))}
        first: Queue[SshwrapError | None] = Queue(maxsize=1)
        log = os.fdopen(  # the thread closes it
            self.paths.open(self.paths.log(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND),
            "a", encoding="utf-8")
        supervisor = Supervisor(
            profile, self.paths, store,
            first_wait=float(message["wait"]), foreground=bool(message.get("foreground")),
            secret=message.get("secret"), log=log, env=dict(message["env"]),
            identity=self.identity, share=bool(message.get("share")), on_first_result=first.put,
            hosting=self.hosting, hooks=self.hooks, ready=self.ready)
        supervisor.on_event = self.events.publish
        thread = threading.Thread(target=self._run, args=(name, supervisor, log),
                                  name=f"tunnel {name}", daemon=True)
        with self.lock:
            if self.quit.is_set():
                log.close()
                return {"exiting": True}
            self.tunnels[name] = Tunnel(supervisor, thread, dict(message))
            # The client's parent-death signal follows this thread: it lives as long as the
            # tunnel does, and stops the client before it ends.
            thread.start()
        try:  # a foreground start retries its first failure: answered after ``wait`` anyway
            error = first.get(timeout=float(message["wait"]) + 9 if supervisor.foreground else None)
        except Empty:
            return {"code": 0, "pending": True}
        if error is not None:
            return {"code": int(error.exit_code), "error": error_data(error)}
        return {"code": 0, "forwards": [
            {"type": c.forward.type, "listen": c.forward.listen, "to": c.forward.to,
             "healthy": c.healthy, "detail": c.detail} for c in supervisor.ready_checks]}

    def _run(self, name: str, supervisor: Supervisor, log: Any) -> None:
        try:
            code = supervisor.run(handle_signals=False)
            self.say(f"{name}: supervision ended with status {code}")
        except Exception as error:  # one tunnel's bug must not end the others
            self.say(f"{name}: internal error: {type(error).__name__}: {error}")
            _record_failure(self.paths, name, f"internal error of its supervisor: {error}")
        finally:
            with contextlib.suppress(OSError):  # what it could not flush to a full disk
                log.close()
            with self.lock:
                current = self.tunnels.get(name)
                if current is not None and current.supervisor is supervisor:
                    del self.tunnels[name]
                if not self.tunnels:
                    self.idle_since = time.monotonic()

    def stop(self, name: str) -> bool:
        """Stop one tunnel (its client ends, its record goes); False if it was not ours."""
        with self.lock:
            tunnel = self.tunnels.get(name)
        if tunnel is None:
            return False
        tunnel.supervisor.request_stop()
        tunnel.thread.join(STOP_JOIN)
        return not tunnel.thread.is_alive()

    # -- events and reload ------------------------------------------------------------------

    def _end_followers(self) -> None:
        """Let the followers have the last events (the tunnels' downs) before we exit."""
        self.events.close()
        with self.lock:
            self.followers_done.wait_for(lambda: self.followers == 0, timeout=2.0)

    def _reload_on_signal(self) -> None:
        from sshwrap.runtime.engine.reload import reload_tunnels

        try:
            answer = reload_tunnels(self)
        except Exception as error:  # a bug here must not end the engine
            self.say(f"reload failed: {type(error).__name__}: {error}")
            return
        done = ", ".join(f"{r['name']} {r['action']}" for r in answer["tunnels"])
        self.say(f"reloaded on SIGHUP: {done or 'nothing runs'}")

    def _stop_all(self) -> None:
        with self.lock:
            tunnels = list(self.tunnels.values())
        for tunnel in tunnels:
            tunnel.supervisor.request_stop()
        for tunnel in tunnels:
            tunnel.thread.join(STOP_JOIN)


def start_master(hosting: Hosting, paths: StatePaths, profile: Profile, key: str, wait: float,
                 *, secret: str | None, env: Mapping[str, str] | None) -> int:
    """Supervise a shared connection's master in a thread of the engine
    (runtime/supervise/masters.py, imported when a tunnel first asks for a shared connection)."""
    from sshwrap.runtime.supervise.masters import start_hosted

    return start_hosted(hosting, paths, profile, key, wait, secret=secret, env=env)


def _record_failure(paths: StatePaths, name: str, reason: str) -> None:
    from sshwrap.runtime.system import state

    with contextlib.suppress(SshwrapError, OSError):
        record = state.read_record(paths, name)
        if record is not None:
            state.write_record(paths, record.failed(SshwrapError(reason)))
