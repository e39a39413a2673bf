"""Text of the up/down/restart outcomes and of tunnel status, from the reports' wire form.

A report crosses the engine's socket as plain JSON values (``to_wire()`` of the results in
runtime/observe/results.py: its ``--json`` form, its exit code, its errors as data). This is
the one renderer of them, for every front end: the express lane prints the engine's answer
as it comes (without loading the results' classes), the full command line and ``emit`` print
a report's ``to_wire()``.
"""

from __future__ import annotations

import sys
import time

from sshwrap.cli.render.text import error_text, json_block, message, table, text_block

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: A report's wire form: {"tunnels": rows, "exit_code"} of a status, {"command", "outcomes",
#: "errors", "exit_code"} of up, down and restart.
Wire = dict[str, "Any"]


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _outcomes_text(wire: Wire) -> str:
    if not wire["outcomes"]:
        return "no tunnel to act on"
    lines = []
    for outcome in wire["outcomes"]:
        if outcome["action"] == "failed":
            continue  # failures go to stderr as errors
        pid = f" (pid {outcome['pid']})" if outcome["pid"] else ""
        lines.append(f"{outcome['name']}: {outcome['action']}{pid}")
        lines.extend(f"  {f['type']} {f['listen']} -> {f['to'] or 'SOCKS'}"
                     for f in outcome["forwards"])
        if outcome["message"]:
            lines.append(f"  note: {message(outcome['message'])}")
    return "\n".join(lines)


def _failed_when(row: Wire) -> str:
    """A kept failure's exit code and time: it stays until up or down."""
    if row["failure_code"] is None or row["failed_at"] is None:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["failed_at"]))
    return f" [exit {row['failure_code']}, since {when}]"


def _rtt(row: Wire) -> str:
    """The first hop's round-trip time, as ``ss -ti`` would round it for a person."""
    rtt = row["rtt_ms"]
    if rtt is None:
        return "-"
    return f"{rtt:.1f} ms" if rtt < 10 else f"{rtt:.0f} ms"


def _forward_cell(row: Wire) -> list[str]:
    if not row["forwards"]:
        return [""]
    return [f"{'ok ' if f['healthy'] else '-- '}{f['type']} {f['listen']} -> {f['to'] or 'SOCKS'}"
            + ("" if f["healthy"] or row["pid"] is None else f" ({f['detail']})")
            + ("" if f["open"] is None else f", {f['open']} open")
            for f in row["forwards"]]


def _status_text(wire: Wire) -> str:
    if not wire["tunnels"]:
        return "no profiles and no running tunnels"
    rows: list[list[object]] = []
    for row in wire["tunnels"]:
        state = f"{row['state']}" + (" (changed)" if row["changed"] else "") \
            + (" (shared)" if row["shared"] else "")
        cells = _forward_cell(row)
        rows.append([row["name"], state, row["pid"] or "-", _uptime(row["uptime"]), _rtt(row),
                     row["restarts"], cells[0]])
        blank = [""] * 6
        rows.extend([*blank, cell] for cell in cells[1:])
        if row["detail"]:
            rows.append([*blank, f"note: {message(row['detail'])}{_failed_when(row)}"])
        elif row["last_failure"] and row["restarts"]:
            rows.append([*blank, f"last failure: {row['last_failure']}"])
    return table(["NAME", "STATE", "PID", "UPTIME", "RTT", "RESTARTS", "FORWARDS"], rows)


def report_text(wire: Wire) -> str:
    """A report as a person reads it: the status table, or a line per tunnel acted on."""
    return _status_text(wire) if "tunnels" in wire else _outcomes_text(wire)


def report_streams(wire: Wire, *, as_json: bool) -> tuple[str, str]:
    """What up, down, restart and status print: the report for stdout (its ``--json`` form
    is the wire form's rows), each failure of a tunnel for stderr."""
    rows = wire["tunnels"] if "tunnels" in wire else wire["outcomes"]
    out = json_block(rows) if as_json else text_block(report_text(wire))
    failures = [data for data in wire.get("errors", ()) if data is not None]
    if not failures:
        return out, ""
    from sshwrap.runtime.system.wire import error_from_data

    return out, "".join(error_text(error_from_data(data)) for data in failures)


def print_report(wire: Wire, *, as_json: bool) -> int:
    """Print a report as every front end of up, down, restart and status does; its exit code."""
    out, err = report_streams(wire, as_json=as_json)
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    return int(wire["exit_code"])
