"""Each use-case result rendered as JSON values or as text: the default for any result, and the
registry the modules of this package add their types to (singledispatch)."""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from functools import singledispatch
from pathlib import Path
from typing import Any

from sshwrap.cli.render.text import json_block, text_block


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
def to_json(value: Any) -> Any:
    """A use-case result as JSON values: its own wire form where it has one (what crosses the
    engine's socket), else its fields; the modules of this package register other shapes."""
    own = getattr(value, "to_json", None)
    return own() if callable(own) else to_jsonable(value)


@singledispatch
def to_text(value: Any) -> str:
    """Human rendering of a use-case result; the modules of this package register their types.
    A report that crosses the engine's socket is rendered from that wire form, as the express
    lane renders it (cli/render/runtime.py)."""
    if isinstance(value, str):
        return value
    wire = getattr(value, "to_wire", None)
    if callable(wire):
        from sshwrap.cli.render.runtime import report_text

        return report_text(wire())
    return json.dumps(to_jsonable(value), indent=2)


def rendered(value: Any, *, as_json: bool = False) -> str:
    """A result as JSON or as text, ending in a newline (empty when there is nothing to say)."""
    return json_block(to_json(value)) if as_json else text_block(to_text(value))


def emit(value: Any, *, as_json: bool = False) -> None:
    """Print a result as JSON or as text, on stdout."""
    sys.stdout.write(rendered(value, as_json=as_json))
