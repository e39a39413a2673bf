"""Text rendering of profile listings, validation reports and compiled output."""

from __future__ import annotations

from typing import Any

from sshwrap.cli.render import message, table, to_json, to_jsonable, to_text
from sshwrap.usecases.profiles import AddResult, Compiled, ProfileList, ValidationReport


@to_json.register
def _profile_list_json(value: ProfileList) -> Any:
    return to_jsonable(list(value.entries))


@to_json.register
def _validation_json(value: ValidationReport) -> Any:
    return to_jsonable(list(value.results))


@to_text.register
def _profile_list(value: ProfileList) -> str:
    if not value.entries:
        return "no profiles found in: " + ", ".join(value.dirs)
    rows = []
    for e in value.entries:
        if e.problems:
            rows.append([e.name, "INVALID", "", e.problems[0]])
            continue
        via = f"{e.host} via {','.join(e.jump)}" if e.jump else e.host
        rows.append([e.name, via, ",".join(e.tags), "; ".join(e.forwards)])
    return table(["NAME", "HOST", "TAGS", "FORWARDS"], rows)


@to_text.register
def _validation(value: ValidationReport) -> str:
    lines = []
    for result in value.results:
        lines.append(f"ok       {result.target}" if result.ok else f"invalid  {result.target}")
        lines.extend(f"  {message(p)}" for p in result.problems)
    return "\n".join(lines)


@to_text.register
def _compiled(value: Compiled) -> str:
    return value.text


@to_text.register
def _added(value: AddResult) -> str:
    if not value.written:
        return value.toml
    return f"wrote {value.path}"
