"""Text rendering of port listings, and check reports as text or JSON from one step list."""

from __future__ import annotations

from sshwrap.cli.render import message, table, to_text
from sshwrap.runtime.system.ports import PortsReport
from sshwrap.usecases.check_steps import CheckReport, StepStatus

_MARK = {StepStatus.PASS: "pass", StepStatus.FAIL: "FAIL", StepStatus.SKIP: "skip"}


@to_text.register
def _ports(value: PortsReport) -> str:
    if not value.entries:
        return "nothing listens on the ports asked for"
    rows = []
    for e in value.entries:
        owner = f"tunnel {e.tunnel}" if e.tunnel else ""
        if e.squatter:
            owner = (owner + " " if owner else "") + "SQUATTER?"
        rows.append([e.listen, e.family, e.pid if e.pid is not None else "?", e.program, owner,
                     e.command])
    text = table(["LISTEN", "FAMILY", "PID", "PROGRAM", "SSHWRAP", "COMMAND"], rows)
    if value.warnings:
        text += "\n\n" + "\n".join(f"warning: {w}" for w in value.warnings)
    return text


@to_text.register
def _check(value: CheckReport) -> str:
    lines = [f"check {value.name}"]
    width = max((len(step.segment) for step in value.steps), default=0)
    for fields in (step.fields() for step in value.steps):
        mark = _MARK[StepStatus(fields["status"])]
        lines.append(f"  {mark}  {fields['segment']:<{width}}  {fields['name']}: "
                     f"{message(fields['detail'])}")
        if fields["hint"] and not fields["ok"]:
            lines.append(f"  {'':4}  {'':<{width}}  hint: {message(fields['hint'])}")
    lines.append(value.summary)
    return "\n".join(lines)
