"""The primitives of every rendering: text made safe to print, tables, indented JSON, error
lines. Light to import: the express lane prints its reports with them."""

from __future__ import annotations

import json
import math

from sshwrap.textsafe import LINE_LIMIT, escaped, safe_lines, shortened

#: typing costs the express lane a tenth of its start-up; type checkers take the names.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from sshwrap.errors import SshwrapError


def json_block(value: Any) -> str:
    """JSON values as ``--json`` prints them: indented, ending in a newline. JSON escapes
    controls itself (and every non-ASCII character)."""
    return indented_json(value) + "\n"


def text_block(text: str) -> str:
    """Text as printed, ending in a newline (empty when there is nothing to say).

    Text keeps only newlines and tabs raw: a profile value, a server's message or an ssh
    config line holding ESC, CR or a bidi override is shown escaped, never acted on by the
    terminal.
    """
    text = safe_lines(text)
    return text if not text or text.endswith("\n") else text + "\n"


def indented_json(value: Any) -> str:
    """``json.dumps(value, indent=2)``, to the byte, in a fraction of its time: with an indent,
    the json module encodes in Python item by item (a hundred status rows took it longer than
    reading them). Anything but plain JSON values is left to the json module."""
    parts: list[str] = []
    try:
        _put_json(value, parts, "\n")
    except TypeError:
        return json.dumps(value, indent=2)
    return "".join(parts)


def _put_json(value: Any, parts: list[str], newline: str) -> None:
    kind = type(value)
    if kind is str:
        parts.append(_json_string(value))
    elif kind is dict:
        if not value:
            parts.append("{}")
            return
        inner = newline + "  "
        separator = "{" + inner
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError("a key that is not a string")
            parts.append(separator + _json_string(key) + ": ")
            _put_json(item, parts, inner)
            separator = "," + inner
        parts.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            parts.append("[]")
            return
        inner = newline + "  "
        separator = "[" + inner
        for item in value:
            parts.append(separator)
            _put_json(item, parts, inner)
            separator = "," + inner
        parts.append(newline + "]")
    else:
        parts.append(_json_scalar(value))


def _json_scalar(value: Any) -> str:
    if value is None or type(value) is bool:
        return _JSON_CONSTANTS[value]
    if isinstance(value, str):
        return str(_json_string(value))
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else json.dumps(value)
    raise TypeError(type(value).__name__)


_json_string = json.encoder.encode_basestring_ascii
_JSON_CONSTANTS = {None: "null", True: "true", False: "false"}


def error_text(error: SshwrapError) -> str:
    """An error as ``sshwrap: error: ...`` lines and a hint, for stderr: escaped, and each
    line cut short so that a huge value quoted back is not echoed whole."""
    lines = [f"sshwrap: error: {safe_lines(line, LINE_LIMIT)}\n" for line in error.lines()]
    if error.hint:
        lines.append(f"hint: {safe_lines(error.hint, LINE_LIMIT)}\n")
    return "".join(lines)


def internal_error_text(error: BaseException) -> str:
    """The last resort for an unexpected error: one line, the traceback only on request."""
    return (f"sshwrap: internal error: {type(error).__name__}: "
            f"{escaped(str(error)[:LINE_LIMIT])}\n"
            "hint: run again with --debug to see the traceback\n")


def message(text: str) -> str:
    """A message that may quote a user's or a server's value, as printed: every line cut at
    LINE_LIMIT (a 10 MB host is not echoed whole) and escaped."""
    return safe_lines(text, LINE_LIMIT)


def _cell(value: object) -> str:
    return escaped(shortened(str(value), LINE_LIMIT))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table; the last column is not padded."""
    # escaped before measuring: an escape sequence is as wide as it is printed
    cells = [[str(h) for h in headers]] + [["" if c is None else _cell(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
