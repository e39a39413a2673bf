"""What the engine's socket accepts: each request's fields and their types, checked once, as
the command line checks its own input (a NAME by sshwrap/names.py), before anything is done.

A request that is not one (random bytes, bad JSON, a line too long, a field of the wrong
type, a name that is a path) is bad input: answered with its error as data, never run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sshwrap.errors import InvalidInput, Problem
from sshwrap.names import checked_name

#: The longest request line the engine reads (every request fits in far less).
MAX_REQUEST = 1 << 20

#: Checks one field's value: returns it (normalised), or raises ValueError saying why not.
Check = Callable[[object], object]


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("is not a string")
    if "\0" in value:
        raise ValueError("contains a NUL byte")
    return value


def optional_text(value: object) -> str | None:
    return None if value is None else text(value)


def flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


def seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise ValueError("is not a number of seconds")
    return float(value)


def optional_seconds(value: object) -> float | None:
    return None if value is None else seconds(value)


def texts(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("is not a list of strings")
    return [text(item) for item in value]


def env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("is not a mapping of strings")
    return {text(key): text(item) for key, item in value.items()}


def name(value: object) -> str:
    return _checked_name(text(value), file_ok=False)


def _checked_name(value: str, *, file_ok: bool) -> str:
    try:
        return checked_name(value, file_ok=file_ok)
    except InvalidInput as error:
        raise ValueError(error.problems[0].message) from None


def names(*, file_ok: bool) -> Check:
    def check(value: object) -> list[str]:
        return [_checked_name(item, file_ok=file_ok) for item in texts(value)]

    return check


#: Each field: its check, and its value when the request leaves it out (``REQUIRED``: none).
REQUIRED = object()
Fields = Mapping[str, tuple[Check, object]]

#: Where the asker is: its profile folders (absolute or from ``cwd``), its environment.
ASKER: Fields = {"profiles": (texts, []), "cwd": (text, REQUIRED), "env": (env, REQUIRED)}

#: The engine's own requests; the commands served besides are registered with theirs.
ENGINE_REQUESTS: dict[str, Fields] = {
    "ping": {},
    "events": {},
    "reload": {},
    "quit": {"only_if_idle": (flag, False)},
    "stop": {"name": (name, REQUIRED)},
    "start": {"name": (name, REQUIRED), "wait": (seconds, REQUIRED),
              "dirs": (texts, REQUIRED), "env": (env, REQUIRED),
              "secret": (optional_text, None), "share": (flag, False),
              "foreground": (flag, False)},
}


@dataclass(frozen=True)
class Served:
    """A command the engine serves besides its own, registered from above: its handler (the
    request, its channel, the engine), and its request's fields, checked before it runs."""

    handler: Callable[[dict[str, Any], Any, Any], None]
    fields: Fields


def bad_request(why: str, key: str = "request") -> InvalidInput:
    return InvalidInput(Problem(why, key=key), hint="the engine's socket takes the requests "
                                                    "of sshwrap's own commands only")


def parse_request(line: bytes, known: Mapping[str, Fields]) -> dict[str, Any]:
    """The request a line carries, every field checked and the missing ones filled in;
    InvalidInput saying what is wrong with it otherwise."""
    import json

    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested beyond reason
        raise bad_request("the request is not a line of JSON") from None
    if not isinstance(message, dict):
        raise bad_request("the request is not a JSON object")
    return checked_request(message, known)


def checked_request(message: Mapping[str, Any], known: Mapping[str, Fields]) -> dict[str, Any]:
    """``message`` with every field its op declares in ``known`` checked; others dropped."""
    op = message.get("op")
    fields = known.get(op) if isinstance(op, str) else None
    if fields is None:
        raise bad_request("unknown request", key="op")
    checked: dict[str, Any] = {"op": op}
    for key, (check, default) in fields.items():
        if key not in message or (message[key] is None and default is not REQUIRED):
            if default is REQUIRED:
                raise bad_request("is missing", key=key)
            checked[key] = list(default) if isinstance(default, list) else default
            continue
        try:
            checked[key] = check(message[key])
        except ValueError as error:
            raise bad_request(str(error), key=key) from None
    return checked
