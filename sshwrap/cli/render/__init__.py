"""The one place where use-case results become text tables or JSON."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from enum import Enum
from functools import singledispatch
from pathlib import Path
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths and tuples as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


@singledispatch
def to_text(value: Any) -> str:
    """Human rendering of a use-case result; the modules of this package register their types."""
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable(value), indent=2)


def emit(value: Any, *, as_json: bool = False) -> None:
    """Print a result as JSON or as text, on stdout."""
    if as_json:
        json_form = value.to_json() if hasattr(value, "to_json") else to_jsonable(value)
        sys.stdout.write(json.dumps(json_form, indent=2) + "\n")
        return
    text = to_text(value)
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)

