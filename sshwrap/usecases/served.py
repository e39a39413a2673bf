"""``down``, ``status`` and ``restart`` served by the engine, and asked of it as data.

The engine runs the same use cases as the command line does without one (usecases/down.py,
usecases/status.py, usecases/up.py), with what only it has: its tunnels stopped directly
(request_stop and join), their rows taken from its memory. The command line asks here first
and runs the use case itself only when no engine serves the state dir; ``status`` and
``down`` never start one. Reports cross the socket as data, errors as themselves
(runtime/system/wire.py), so both ways print the same words and exit with the same code.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sshwrap.errors import SshwrapError, StateConflict
from sshwrap.runtime.observe.results import (
    Action,
    ProgressCallback,
    StatusReport,
    TunnelsReport,
)
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.protocol import (
    ASKER,
    Served,
    flag,
    names,
    optional_seconds,
    optional_text,
)
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT
from sshwrap.runtime.system.wire import error_data, error_from_data
from sshwrap.store import ProfileStore, ProfileStores
from sshwrap.usecases.status import Live

if TYPE_CHECKING:
    from sshwrap.runtime.engine.resident import ResidentSupervisor
    from sshwrap.runtime.system.wire import Channel

#: How long an asker waits for an engine that is exiting after ``down --all`` to be gone.
EXIT_WAIT = 15.0
#: How long ``status`` waits for the engine's answer before it reads the records itself.
STATUS_TIMEOUT = 30.0

# -- the engine's side -----------------------------------------------------------------------


def live_view(engine: ResidentSupervisor) -> dict[str, Live]:
    """The tunnels the engine runs, from memory: each record as its supervisor last wrote it,
    and its client as the supervisor sees it (a shared connection's master by identity)."""
    with engine.lock:
        tunnels = list(engine.tunnels.items())
    view: dict[str, Live] = {}
    for name, tunnel in tunnels:
        record, child = tunnel.supervisor.record, tunnel.supervisor.child
        if record is None or not tunnel.thread.is_alive():
            continue  # not started yet, or just ended: its record file says
        if child is not None and child.pid == record.pid:
            running = child.popen.poll() is None
        else:
            running = state.live_process(record) is not None
        view[name] = Live(record, running)
    return view


def store_of(message: Mapping[str, Any],
             stores: ProfileStores) -> tuple[ProfileStore, dict[str, str]]:
    """The asker's profile store (its directories, from its working directory; kept in the
    engine's ``stores``) and its environment."""
    from sshwrap.store import default_profile_dirs

    env = {str(k): str(v) for k, v in message["env"].items()}
    dirs = message.get("profiles") or default_profile_dirs(env)
    return stores.get(Path(message["cwd"], d) for d in dirs), env


def status_here(engine: ResidentSupervisor, message: Mapping[str, Any]) -> StatusReport:
    from sshwrap.usecases.status import status

    store, _env = store_of(message, engine.stores)
    return status(store, message["names"], engine.paths, live=live_view(engine),
                  hosting=engine.hosting, ready=engine.ready, memory=engine.status_memory)


def down_here(engine: ResidentSupervisor, message: Mapping[str, Any]) -> tuple[TunnelsReport,
                                                                                bool]:
    """The report, and whether the engine exits now (``down --all`` left it nothing to run)."""
    from sshwrap.usecases.down import down

    with engine.lock:
        running = list(engine.tunnels)
    report = down(message["names"], all_tunnels=bool(message["all"]), paths=engine.paths,
                  engine=engine.stop, running=running, hosting=engine.hosting)
    # An engine that never exits when idle (a unit's, runtime/engine/foreground.py) is not ended by
    # down --all either: when it ends is the service manager's call.
    if not message["all"] or message["names"] or not math.isfinite(engine.idle_exit):
        return report, False
    with engine.lock:
        if engine.tunnels:
            return report, False
        engine.quit.set()
    return report, True


def restart_here(engine: ResidentSupervisor, message: Mapping[str, Any],
                 progress: ProgressCallback | None) -> TunnelsReport:
    from sshwrap.usecases.up import restart

    store, env = store_of(message, engine.stores)
    wait = DEFAULT_WAIT if message["wait"] is None else float(message["wait"])
    return restart(store, message["names"], all_profiles=bool(message["all"]),
                   tag=message["tag"], wait=wait, paths=engine.paths, progress=progress,
                   engine=engine.stop, environ=env, hosting=engine.hosting,
                   ready=engine.ready, engine_start=engine.start)


def park_until_exit(engine: ResidentSupervisor) -> None:
    """Hold an asker's connection until the engine has stopped its tunnels and released its
    lock, so a next command finds no engine instead of one on its way out. It does not wait
    for the hooks the engine then drains."""
    engine.released.wait()


def _answered(work: Callable[[], dict[str, Any]], engine: ResidentSupervisor) -> dict[str, Any]:
    """The answer of ``work``, or its error as data."""
    try:
        return work()
    except SshwrapError as error:
        return {"error": error_data(error)}
    except Exception as error:  # a bug of one request must not end the engine
        engine.say(f"a request failed: internal error: {type(error).__name__}: {error}")
        return {"internal": f"{type(error).__name__}: {error}"}


def serve_status(message: dict[str, Any], channel: Channel,
                 engine: ResidentSupervisor) -> None:
    channel.send(_answered(lambda: {"report": status_here(engine, message).to_wire()},
                           engine))


def serve_down(message: dict[str, Any], channel: Channel, engine: ResidentSupervisor) -> None:
    def work() -> dict[str, Any]:
        report, quitting = down_here(engine, message)
        return {"report": report.to_wire(), "quitting": quitting}

    channel.send(_answered(work, engine))
    if engine.quit.is_set():
        park_until_exit(engine)


def serve_restart(message: dict[str, Any], channel: Channel,
                  engine: ResidentSupervisor) -> None:
    def work() -> dict[str, Any]:
        with Asker(channel, engine, show_progress=bool(message.get("progress"))) as asker:
            report = restart_here(engine, message, asker.progress)
        asker.stop_abandoned(report)
        return {"report": report.to_wire()}

    channel.send(_answered(work, engine))


#: The data requests, registered by the composition root (sshwrap/__main__.py).
COMMANDS: dict[str, Served] = {
    "tunnels.status": Served(serve_status, {"names": (names(file_ok=False), []), **ASKER}),
    "tunnels.down": Served(serve_down, {"names": (names(file_ok=False), []),
                                        "all": (flag, False)}),
    "tunnels.restart": Served(serve_restart, {
        "names": (names(file_ok=True), []), "all": (flag, False),
        "tag": (optional_text, None), "wait": (optional_seconds, None),
        "progress": (flag, False), **ASKER}),
}

#: How long the watch over an asker waits between looks (it is woken when the work is done,
#: and at once when the asker hangs up).
HANGUP_POLL = 1.0


class Asker:
    """The client of one up or restart, while its tunnels start: progress goes to it, and
    once it hangs up (Ctrl-C) the first attempts under way are stopped."""

    def __init__(self, channel: Channel, engine: ResidentSupervisor, *,
                 show_progress: bool) -> None:
        self.channel = channel
        self.engine = engine
        self.show_progress = show_progress
        self.starting: set[str] = set()  # names this request is starting (it holds their locks)
        self.hung_up = threading.Event()
        self._done = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="asker", daemon=True)

    def __enter__(self) -> Asker:
        self._watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        os.write(self._wake_write, b"x")
        self._watcher.join()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def progress(self, name: str, ready: int, total: int) -> None:
        if ready == 0:
            self.starting.add(name)
        if self.show_progress and not self.hung_up.is_set():
            try:
                self.channel.send({"progress": [name, ready, total]})
            except OSError:
                self.hung_up.set()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.channel.hung_up(HANGUP_POLL, self._wake_read) and not self._done.is_set():
                self.hung_up.set()
                for name in list(self.starting):
                    self.engine.stop(name)
                return

    def abandoned(self, report: TunnelsReport) -> list[str]:
        """The tunnels this request started that nobody waits for any more."""
        if not self.hung_up.is_set():
            return []
        return [o.name for o in report.outcomes
                if o.name in self.starting and o.action is Action.STARTED]

    def stop_abandoned(self, report: TunnelsReport) -> None:
        from sshwrap.usecases.down import stop_tunnel

        for name in self.abandoned(report):
            stop_tunnel(name, self.engine.paths, engine=self.engine.stop,
                        hosting=self.engine.hosting)


# -- the asker's side ------------------------------------------------------------------------


def ask(paths: StatePaths, message: Mapping[str, Any], *,
        progress: ProgressCallback | None = None,
        timeout: float | None = None) -> dict[str, Any] | None:
    """Have the engine of ``paths`` serve a request; its answer, or None when no engine
    serves the state dir, or none answered within ``timeout`` (the caller runs the use case
    itself). An error it answered is raised as itself."""
    from sshwrap.runtime.engine import daemon

    try:  # no engine has run where it has no lock yet: its socket folder is not made
        path = daemon.socket_path(paths) if daemon.has_run(paths) else None
    except OSError:
        path = None
    if path is None or not path.exists():
        return None
    from sshwrap.runtime.system.rendezvous import CONNECT_WAIT, connect

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(CONNECT_WAIT)
        try:
            connect(conn, str(path))
        except TimeoutError:
            raise StateConflict(f"the engine did not take the request within "
                                f"{CONNECT_WAIT:g} s (it is busy)",
                                hint=f"see {daemon.log_path(paths)}") from None
        except OSError:
            return None  # nothing listens
        try:
            conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            return None
        conn.settimeout(timeout)
        with conn.makefile("rb") as reader:
            answer = _final(reader, progress, paths)
            if answer is not None and answer.get("quitting"):
                conn.settimeout(EXIT_WAIT)
                with contextlib.suppress(OSError):
                    while reader.read(1 << 12):
                        pass
    return answer


def _final(reader: Any, progress: ProgressCallback | None,
           paths: StatePaths) -> dict[str, Any] | None:
    """The final answer; the progress frames before it go to ``progress``."""
    from sshwrap.runtime.engine.daemon import log_path
    from sshwrap.runtime.system.protocol import MAX_REQUEST

    while True:
        try:
            line = reader.readline(MAX_REQUEST)
        except OSError:
            return None
        if not line.endswith(b"\n"):
            return None  # it went away before answering: nothing of ours was done
        frame: dict[str, Any] = json.loads(line)
        if "progress" in frame:
            if progress is not None:
                progress(*frame["progress"])
            continue
        if frame.get("exiting") or isinstance(frame.get("error"), str):
            return None  # exiting, or an engine of an older sshwrap that knows no such request
        if frame.get("error") is not None:
            raise error_from_data(frame["error"])
        if "internal" in frame:
            raise SshwrapError(f"internal error of the engine: {frame['internal']}",
                               hint=f"see {log_path(paths)}")
        return frame


def asked(store: ProfileStore) -> dict[str, Any]:
    """What every request carries of the asker: where profiles are found, its environment."""
    return {"profiles": [str(d) for d in store.dirs], "cwd": os.getcwd(),
            "env": dict(os.environ)}


def status_report(store: ProfileStore, names: Sequence[str] = (),
                  paths: StatePaths | None = None) -> StatusReport:
    """``status``: the engine's live view when one runs, else from the records."""
    from sshwrap.usecases.status import status

    paths = paths or StatePaths.from_env()
    answer = ask(paths, {"op": "tunnels.status", "names": list(names), **asked(store)},
                 timeout=STATUS_TIMEOUT)
    if answer is None:
        return status(store, names, paths)
    return StatusReport.from_wire(answer["report"])


def down_report(names: Sequence[str] = (), *, all_tunnels: bool = False,
                paths: StatePaths | None = None) -> TunnelsReport:
    """``down``: served by the engine when one runs, else from the records."""
    from sshwrap.usecases.down import down
    from sshwrap.usecases.selection import check_names

    paths = paths or StatePaths.from_env()
    check_names(names)  # bad input is told before anything is asked
    answer = ask(paths, {"op": "tunnels.down", "names": list(names), "all": all_tunnels})
    if answer is None:
        return down(names, all_tunnels=all_tunnels, paths=paths)
    return TunnelsReport.from_wire(answer["report"])


def restart_report(store: ProfileStore, names: Sequence[str] = (), *,
                   all_profiles: bool = False, tag: str | None = None,
                   wait: float = DEFAULT_WAIT, paths: StatePaths | None = None,
                   progress: ProgressCallback | None = None) -> TunnelsReport:
    """``restart``: stop and start inside the engine when one runs, else here (its up starts
    the engine)."""
    from sshwrap.usecases.selection import check_wait
    from sshwrap.usecases.up import restart

    paths = paths or StatePaths.from_env()
    check_wait(wait)
    message = {"op": "tunnels.restart", "names": list(names), "all": all_profiles,
               "tag": tag, "wait": wait, "progress": progress is not None, **asked(store)}
    # A profile named by its file is found from here: this process runs it.
    files = any(n.endswith(".toml") for n in names)
    answer = None if files else ask(paths, message, progress=progress)
    if answer is None:
        return restart(store, names, all_profiles=all_profiles, tag=tag, wait=wait,
                       paths=paths, progress=progress)
    return TunnelsReport.from_wire(answer["report"])
