"""``up``, ``down``, ``restart`` and ``status`` served by the engine, and asked of it as data.

One request per command, whichever front end sends it (the express lane, the command line,
the Python API), through the one client (runtime/engine/client.py): progress frames, then
one frame with the report's wire form, or the error as data. The engine runs the use cases
(usecases/up.py, down.py, status.py) with what only it has: its tunnels stopped directly,
their rows taken from its memory. ``up`` and ``restart`` always run in the engine (started
once their input is known to be good); ``status`` and ``down`` never start one, and run
here from the records when none serves the state dir.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sshwrap.errors import SshwrapError, StateConflict
from sshwrap.runtime.observe.results import ProgressCallback, StatusReport, TunnelsReport
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.protocol import (
    ASKER,
    Fields,
    Served,
    flag,
    optional_seconds,
    optional_text,
    texts,
)
from sshwrap.runtime.system.protocol import env as text_map
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT
from sshwrap.runtime.system.wire import error_data
from sshwrap.store import ProfileStore, ProfileStores
from sshwrap.usecases.asker import Asker
from sshwrap.usecases.status import Live

if TYPE_CHECKING:
    from sshwrap.runtime.client.auth import AskSecret
    from sshwrap.runtime.engine.resident import ResidentSupervisor
    from sshwrap.runtime.system.wire import Channel

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


def _names(message: dict[str, Any], *, file_ok: bool) -> list[str]:
    """The request's names, checked as the command line checks them (in its words)."""
    from sshwrap.names import checked_name

    return [checked_name(n, file_ok=file_ok) for n in message["names"]]


def serve_up(message: dict[str, Any], channel: Channel, engine: ResidentSupervisor) -> None:
    """Start the selected tunnels; when the asker hangs up, what this up started is stopped."""
    from sshwrap.usecases import up as tunnels

    def work() -> dict[str, Any]:
        store, env = store_of(message, engine.stores)
        wait = DEFAULT_WAIT if message["wait"] is None else float(message["wait"])
        profiles = tunnels.up_selection(store, _names(message, file_ok=True),
                                        all_profiles=message["all"], tag=message["tag"],
                                        wait=wait)
        secrets = message["secrets"]  # what the asker read (a terminal's) wins

        with Asker(channel, engine, show_progress=bool(message["progress"])) as asker:
            report = tunnels.start_selected(profiles, store, wait=wait, paths=engine.paths,
                                            progress=asker.progress, environ=env,
                                            share=message["share"],
                                            ask_secret=lambda p: secrets.get(p.name),
                                            hosting=engine.hosting, ready=engine.ready,
                                            engine_start=engine.start)
        asker.stop_abandoned(report)
        return {"report": report.to_wire()}

    channel.send(_answered(work, engine))


def serve_status(message: dict[str, Any], channel: Channel,
                 engine: ResidentSupervisor) -> None:
    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=False)
        return {"report": status_here(engine, message).to_wire()}

    channel.send(_answered(work, engine))


def serve_down(message: dict[str, Any], channel: Channel, engine: ResidentSupervisor) -> None:
    """After ``down --all`` the engine may exit, and then holds the connection until it has."""
    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=False)
        report, quitting = down_here(engine, message)
        return {"report": report.to_wire(), "quitting": quitting}

    channel.send(_answered(work, engine))
    if engine.quit.is_set():
        park_until_exit(engine)


def serve_restart(message: dict[str, Any], channel: Channel,
                  engine: ResidentSupervisor) -> None:
    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=True)
        with Asker(channel, engine, show_progress=bool(message["progress"])) as asker:
            report = restart_here(engine, message, asker.progress)
        asker.stop_abandoned(report)
        return {"report": report.to_wire()}

    channel.send(_answered(work, engine))


#: Each command's request, checked before it runs (its names by the handler, in the command
#: line's words); registered by the composition root (sshwrap/__main__.py).
_STARTING: Fields = {"names": (texts, []), "all": (flag, False), "tag": (optional_text, None),
                     "wait": (optional_seconds, None), "progress": (flag, False), **ASKER}
COMMANDS: dict[str, Served] = {
    "up": Served(serve_up, {**_STARTING, "share": (flag, False), "secrets": (text_map, {})}),
    "restart": Served(serve_restart, _STARTING),
    "down": Served(serve_down, {"names": (texts, []), "all": (flag, False)}),
    "status": Served(serve_status, {"names": (texts, []), **ASKER}),
}

# -- the asker's side: the command line's and the Python API's (the lane sends the same) ------


def ask(paths: StatePaths, message: Mapping[str, Any], *,
        progress: ProgressCallback | None = None,
        timeout: float | None = None) -> dict[str, Any] | None:
    """Have the engine of ``paths`` serve a request; its answer, or None when no engine
    serves the state dir (the caller runs the use case itself, or starts one). An error it
    answered is raised as itself."""
    from sshwrap.runtime.engine import client, daemon
    from sshwrap.runtime.system.rendezvous import CONNECT_WAIT

    try:
        path = str(daemon.engine_socket(paths))
        return client.call(path, message, timeout=timeout, progress=progress,
                           log=str(daemon.log_path(paths)))
    except TimeoutError:
        raise StateConflict(f"the engine did not answer within "
                            f"{CONNECT_WAIT if timeout is None else timeout:g} s (it is busy)",
                            hint=f"see {daemon.log_path(paths)}") from None
    except client.Unreachable:
        return None


def _request(op: str, store: ProfileStore | None, names: Sequence[str],
             **options: Any) -> dict[str, Any]:
    """The command's request (runtime/engine/client.py), the profiles found from here."""
    from sshwrap.runtime.engine.client import command

    dirs = [str(d) for d in store.dirs] if store is not None else []
    return command(op, names, profiles=dirs, **options)


def _in_engine(paths: StatePaths, message: dict[str, Any], progress: ProgressCallback | None,
               check: Callable[[], dict[str, str]]) -> TunnelsReport:
    """Run an ``up`` or ``restart`` in the engine. One that runs checks the input itself;
    when none does, ``check`` judges it here first, so that bad input starts nothing and
    writes nothing, and gives the secrets it read on the way; then one is started (once
    more if the one found was exiting)."""
    from sshwrap.runtime.engine import daemon

    answer = ask(paths, message, progress=progress)
    if answer is not None:
        return TunnelsReport.from_wire(answer["report"])
    read = check()
    if read:
        message = {**message, "secrets": {**read, **message.get("secrets", {})}}
    paths.ensure()
    for _attempt in (1, 2):
        started = daemon.ensure_running(paths, message["env"])
        try:
            answer = ask(paths, message, progress=progress)
        except SshwrapError:
            if started:  # what it was started for failed: it does not stay behind, idle
                daemon.stop_if_idle(paths)
            raise
        if answer is not None:
            report = TunnelsReport.from_wire(answer["report"])
            if started and report.exit_code:
                daemon.stop_if_idle(paths)
            return report
        daemon.wait_gone(paths, daemon.STOP_JOIN)
    raise StateConflict("the engine went away twice while asked to start tunnels",
                        hint=f"see {daemon.log_path(paths)}")


def _from_here(names: Sequence[str]) -> list[str]:
    """Names as the engine finds them: a profile named by its file, from this directory."""
    from sshwrap.store import SUFFIX

    return [os.path.abspath(n) if n.endswith(SUFFIX) or os.sep in n else n for n in names]


def up_report(store: ProfileStore, names: Sequence[str] = (), *, all_profiles: bool = False,
              tag: str | None = None, wait: float = DEFAULT_WAIT, share: bool = False,
              paths: StatePaths | None = None, progress: ProgressCallback | None = None,
              ask_secret: AskSecret | None = None) -> TunnelsReport:
    """``up``: run by the engine. A person's secrets (``ask_secret``) are read here first and
    handed over the private socket; the engine reads the others (variables, keyrings) as the
    asker would."""
    from sshwrap.runtime.client.auth import secret_for
    from sshwrap.usecases.up import up_selection

    def secrets(ask: AskSecret | None) -> dict[str, str]:
        profiles = up_selection(store, names, all_profiles=all_profiles, tag=tag, wait=wait)
        return {p.name: secret for p in profiles if (secret := secret_for(p, ask)) is not None}

    message = _request("up", store, _from_here(names), all=all_profiles, tag=tag, wait=wait,
                       share=share, progress=progress is not None,
                       secrets=secrets(ask_secret) if ask_secret is not None else None)
    return _in_engine(paths or StatePaths.from_env(), message, progress,
                      lambda: {} if ask_secret is not None else secrets(None))


def restart_report(store: ProfileStore, names: Sequence[str] = (), *,
                   all_profiles: bool = False, tag: str | None = None,
                   wait: float = DEFAULT_WAIT, paths: StatePaths | None = None,
                   progress: ProgressCallback | None = None) -> TunnelsReport:
    """``restart``: stop and start inside the engine."""
    from sshwrap.usecases.up import up_selection

    def check() -> dict[str, str]:
        up_selection(store, names, all_profiles=all_profiles, tag=tag, wait=wait)
        return {}

    message = _request("restart", store, _from_here(names), all=all_profiles, tag=tag,
                       wait=wait, progress=progress is not None)
    return _in_engine(paths or StatePaths.from_env(), message, progress, check)


def status_report(store: ProfileStore, names: Sequence[str] = (),
                  paths: StatePaths | None = None) -> StatusReport:
    """``status``: the engine's live view when one runs, else from the records."""
    from sshwrap.usecases.status import status

    paths = paths or StatePaths.from_env()
    answer = ask(paths, _request("status", store, names), timeout=STATUS_TIMEOUT)
    if answer is None:
        return status(store, names, paths)
    return StatusReport.from_wire(answer["report"])


def down_report(names: Sequence[str] = (), *, all_tunnels: bool = False,
                paths: StatePaths | None = None) -> TunnelsReport:
    """``down``: served by the engine when one runs, else from the records."""
    from sshwrap.usecases.down import down

    paths = paths or StatePaths.from_env()
    answer = ask(paths, _request("down", None, names, all=all_tunnels))
    if answer is None:
        return down(names, all_tunnels=all_tunnels, paths=paths)
    return TunnelsReport.from_wire(answer["report"])
