"""Text rendering of up/down/restart outcomes and of tunnel status."""

from __future__ import annotations

import time

from sshwrap.cli.render import error_text, message, rendered, table, to_text
from sshwrap.usecases.up import Action, StatusReport, TunnelsReport, TunnelStatus


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


@to_text.register
def _tunnels_report(value: TunnelsReport) -> str:
    if not value.outcomes:
        return "no tunnel to act on"
    lines = []
    for outcome in value.outcomes:
        if outcome.action is Action.FAILED:
            continue  # failures go to stderr as errors
        pid = f" (pid {outcome.pid})" if outcome.pid else ""
        lines.append(f"{outcome.name}: {outcome.action.value}{pid}")
        lines.extend(f"  {f.type} {f.listen} -> {f.to or 'SOCKS'}" for f in outcome.forwards)
        if outcome.message:
            lines.append(f"  note: {message(outcome.message)}")
    return "\n".join(lines)


def report_streams(report: TunnelsReport, *, as_json: bool) -> tuple[str, str]:
    """What up, down and restart print: the report for stdout, each failure for stderr."""
    errors = "".join(error_text(o.error) for o in report.outcomes if o.error is not None)
    return rendered(report, as_json=as_json), errors


def _failed_when(row: TunnelStatus) -> str:
    """A kept failure's exit code and time: it stays until up or down."""
    if row.failure_code is None or row.failed_at is None:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.failed_at))
    return f" [exit {row.failure_code}, since {when}]"


def _rtt(row: TunnelStatus) -> str:
    """The first hop's round-trip time, as ``ss -ti`` would round it for a person."""
    if row.rtt_ms is None:
        return "-"
    return f"{row.rtt_ms:.1f} ms" if row.rtt_ms < 10 else f"{row.rtt_ms:.0f} ms"


def _forward_cell(row: TunnelStatus) -> list[str]:
    if not row.forwards:
        return [""]
    return [f"{'ok ' if f.healthy else '-- '}{f.type} {f.listen} -> {f.to or 'SOCKS'}"
            + ("" if f.healthy or row.pid is None else f" ({f.detail})")
            + ("" if f.open is None else f", {f.open} open")
            for f in row.forwards]


@to_text.register
def _status(value: StatusReport) -> str:
    if not value.tunnels:
        return "no profiles and no running tunnels"
    rows: list[list[object]] = []
    for row in value.tunnels:
        state = row.state.value + (" (changed)" if row.changed else "") \
            + (" (shared)" if row.shared else "")
        cells = _forward_cell(row)
        rows.append([row.name, state, row.pid or "-", _uptime(row.uptime), _rtt(row),
                     row.restarts, cells[0]])
        blank = [""] * 6
        rows.extend([*blank, cell] for cell in cells[1:])
        if row.detail:
            rows.append([*blank, f"note: {message(row.detail)}{_failed_when(row)}"])
        elif row.last_failure and row.restarts:
            rows.append([*blank, f"last failure: {row.last_failure}"])
    return table(["NAME", "STATE", "PID", "UPTIME", "RTT", "RESTARTS", "FORWARDS"], rows)
