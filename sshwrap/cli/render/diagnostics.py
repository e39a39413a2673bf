"""Text rendering of port listings and check reports."""

from __future__ import annotations

from sshwrap.cli.render import message, table, to_text
from sshwrap.runtime.check import CheckReport, StepStatus
from sshwrap.runtime.ports import PortsReport

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
    for step in value.steps:
        lines.append(f"  {_MARK[step.status]}  {step.name}: {message(step.detail)}")
        if step.hint and step.status is StepStatus.FAIL:
            lines.append(f"        hint: {message(step.hint)}")
    failed = sum(step.status is StepStatus.FAIL for step in value.steps)
    lines.append(f"{value.name}: " + ("all steps passed" if not failed
                                      else f"{failed} step(s) failed"))
    return "\n".join(lines)
