"""What a check reports: steps with a status and the segment of the path they judge."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StepStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a step status, not a secret
    FAIL = "fail"
    SKIP = "skip"


#: Where along the path a step looks (the guides' words): this machine, a jump host ("hop N"),
#: the tunnel host, what lies behind it, and the tunnel host's forwarding rules.
CLIENT = "client"
GATEWAY = "gateway"
SERVER_SIDE = "server side"
SERVER_POLICY = "server policy"


def hop_segment(index: int) -> str:
    """The segment of jump host ``index`` (1-based)."""
    return f"hop {index}"


@dataclass(frozen=True)
class CheckStep:
    name: str
    status: StepStatus
    detail: str
    hint: str = ""
    segment: str = CLIENT

    @property
    def ok(self) -> bool:
        return self.status is not StepStatus.FAIL

    def fields(self) -> dict[str, Any]:
        """The step as both renderings see it: the JSON object, and the text line's parts."""
        return {"name": self.name, "segment": self.segment, "status": self.status.value,
                "ok": self.ok, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True)
class CheckReport:
    name: str
    steps: tuple[CheckStep, ...]

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def summary(self) -> str:
        failed = [step for step in self.steps if not step.ok]
        if not failed:
            return f"{self.name}: all steps passed"
        segments = ", ".join(dict.fromkeys(step.segment for step in failed))
        return f"{self.name}: {len(failed)} step(s) failed ({segments})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "summary": self.summary,
                "steps": [step.fields() for step in self.steps]}


def passed(name: str, detail: str, segment: str = CLIENT) -> CheckStep:
    return CheckStep(name, StepStatus.PASS, detail, "", segment)


def failed(name: str, detail: str, hint: str, segment: str = CLIENT) -> CheckStep:
    return CheckStep(name, StepStatus.FAIL, detail, hint, segment)


def skipped(name: str, detail: str, segment: str = CLIENT) -> CheckStep:
    return CheckStep(name, StepStatus.SKIP, detail, "", segment)
