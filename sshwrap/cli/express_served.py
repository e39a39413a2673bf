"""The express lane's half that the engine serves (the client half is cli/express.py): each
command run by the same use cases as the full command line, rendered by its renderer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sshwrap.runtime.engine.resident import ResidentSupervisor
    from sshwrap.runtime.system.wire import Channel


def _rendered(work: Callable[[], dict[str, Any]], channel: Channel,
              resident: ResidentSupervisor, message: dict[str, Any]) -> None:
    """Send the answer of ``work`` (exit code, stdout, stderr, as the full command line prints
    them), or its error as the full command line prints it."""
    from sshwrap.cli.outcome import failure
    from sshwrap.errors import SshwrapError

    try:
        answer = work()
    except Exception as error:  # as the full command line says it
        if not isinstance(error, SshwrapError):
            resident.say(f"{message['op']}: internal error: {type(error).__name__}: {error}")
        text, code = failure(error)
        answer = {"exit": code, "stdout": "", "stderr": text}
    channel.send(answer)


def _report(report: Any, message: dict[str, Any]) -> dict[str, Any]:
    from sshwrap.cli.render.runtime import report_streams

    out, err = report_streams(report, as_json=message["json"])
    return {"exit": int(report.exit_code), "stdout": out, "stderr": err}


def _names(message: dict[str, Any], *, file_ok: bool) -> list[str]:
    from sshwrap.names import checked_name

    return [checked_name(n, file_ok=file_ok) for n in message["names"]]  # as the CLI does


def serve_up(message: dict[str, Any], channel: Channel, resident: ResidentSupervisor) -> None:
    """Run one ``up`` for a client of the lane and send it the outcome, rendered as the full
    command line renders it; when the asker hangs up, what this up started is stopped."""
    from sshwrap.usecases import up as tunnels
    from sshwrap.usecases.served import Asker, store_of

    def work() -> dict[str, Any]:
        store, env = store_of(message, resident.stores)
        wait = tunnels.DEFAULT_WAIT if message["wait"] is None else float(message["wait"])
        names = _names(message, file_ok=True)
        profiles = tunnels.up_selection(store, names, all_profiles=message["all"],
                                        tag=message["tag"], wait=wait)
        with Asker(channel, resident, show_progress=message["progress"]) as asker:
            report = tunnels.start_selected(profiles, store, wait=wait, paths=resident.paths,
                                            progress=asker.progress, environ=env,
                                            share=message["share"], hosting=resident.hosting,
                                            ready=resident.ready, engine_start=resident.start)
        asker.stop_abandoned(report)
        return _report(report, message)

    _rendered(work, channel, resident, message)


def serve_restart(message: dict[str, Any], channel: Channel,
                  resident: ResidentSupervisor) -> None:
    """``restart`` for a client of the lane: stop and start inside the engine."""
    from sshwrap.usecases.served import Asker, restart_here

    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=True)
        with Asker(channel, resident, show_progress=message["progress"]) as asker:
            report = restart_here(resident, message, asker.progress)
        asker.stop_abandoned(report)
        return _report(report, message)

    _rendered(work, channel, resident, message)


def serve_down(message: dict[str, Any], channel: Channel, resident: ResidentSupervisor) -> None:
    """``down`` for a client of the lane; after ``down --all`` the engine may exit, and then
    holds the connection until it has."""
    from sshwrap.usecases.served import down_here, park_until_exit

    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=False)
        report, quitting = down_here(resident, message)
        return {**_report(report, message), "quitting": quitting}

    _rendered(work, channel, resident, message)
    if resident.quit.is_set():
        park_until_exit(resident)


def serve_status(message: dict[str, Any], channel: Channel,
                 resident: ResidentSupervisor) -> None:
    """``status`` for a client of the lane, from the engine's live view."""
    from sshwrap.cli.render import rendered
    from sshwrap.cli.render import runtime as _render  # noqa: F401 - registers the table
    from sshwrap.usecases.served import status_here

    def work() -> dict[str, Any]:
        message["names"] = _names(message, file_ok=False)
        report = status_here(resident, message)
        return {"exit": int(report.exit_code), "stdout": rendered(report, as_json=message["json"]),
                "stderr": ""}

    _rendered(work, channel, resident, message)


#: What the lane asks of the engine, registered by the composition root (sshwrap/__main__.py).
HANDLERS = {"up": serve_up, "restart": serve_restart, "down": serve_down,
            "status": serve_status}
