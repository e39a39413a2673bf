"""The one place where use-case results become text tables or JSON, made safe to print.

The primitives (text.py) load with the package. The registry of each result type's renderer
(dispatch.py: to_json, to_text, rendered, emit) loads when first asked for: the express lane,
which prints the engine's answer with runtime.py, has no use for it.
"""

from __future__ import annotations

from sshwrap.cli.render.text import (
    error_text,
    indented_json,
    internal_error_text,
    json_block,
    message,
    table,
    text_block,
)

#: typing costs the express lane a tenth of its start-up; type checkers take the names.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from sshwrap.cli.render.dispatch import emit, rendered, to_json, to_jsonable, to_text

__all__ = ["emit", "error_text", "indented_json", "internal_error_text", "json_block",
           "message", "rendered", "table", "text_block", "to_json", "to_jsonable", "to_text"]

_REGISTRY = frozenset({"emit", "rendered", "to_json", "to_jsonable", "to_text"})


def __getattr__(name: str) -> object:
    if name in _REGISTRY:
        from sshwrap.cli.render import dispatch

        return getattr(dispatch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
