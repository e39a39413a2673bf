"""Events and reload reports as text lines or JSON."""

from __future__ import annotations

import json
import time

from sshwrap.cli.render import error_text, to_text
from sshwrap.runtime.engine.reload import ReloadReport
from sshwrap.runtime.supervise.events import Event
from sshwrap.textsafe import escaped


def event_line(event: Event, *, as_json: bool = False) -> str:
    """One event: a JSON object, or ``TIME NAME FROM -> TO (pid P, restarts R): REASON``."""
    if as_json:
        return json.dumps(event.to_json()) + "\n"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(event.time))
    pid = f"pid {event.pid}, " if event.pid else ""
    reason = f": {event.reason}" if event.reason else ""
    return escaped(f"{stamp} {event.name} {event.from_state} -> {event.to_state} "
                   f"({pid}restarts {event.restarts}){reason}") + "\n"


@to_text.register
def _reload_report(value: ReloadReport) -> str:
    if not value.engine_running:
        return "no engine runs: no tunnel to reload"
    if not value.outcomes:
        return "no tunnel runs: nothing to reload"
    lines = []
    for outcome in value.outcomes:
        pid = f" (pid {outcome.pid})" if outcome.pid else ""
        lines.append(f"{outcome.name}: {outcome.action}{pid}")
        if outcome.error is not None:
            lines.append("  " + error_text(outcome.error).rstrip("\n").replace("\n", "\n  "))
    return "\n".join(lines)
