"""The ``[hooks]`` table of a profile: an argv list per state, validated like every value."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Protocol

from sshwrap.core.model import DEFAULT_HOOK_TIMEOUT, HOOK_STATES, Hooks
from sshwrap.textsafe import shown


class _Collector(Protocol):
    """The problem collector of core/parse.py (named here, not imported: parse imports us)."""

    def add(self, key: str, message: str) -> None: ...
    def unknown_keys(self, prefix: str, data: Mapping[str, object],
                     known: tuple[str, ...]) -> None: ...

HOOK_KEYS = (*(f"on_{state}" for state in HOOK_STATES), "timeout")
#: An argv element of a hook: at most this long, and at most this many of them.
MAX_HOOK_ARG, MAX_HOOK_ARGS = 4096, 64


def _parse_hook_argv(c: _Collector, key: str, value: object) -> tuple[str, ...] | None:
    """One hook: an argv list, never a shell string; its program an absolute path or a
    bare name looked up on PATH when it runs (the engine runs from /: nothing relative)."""
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        c.add(key, "must be a non-empty list of strings, the program and its arguments "
              "(as [\"notify-send\", \"tunnel down\"]; never a shell command line)")
        return None
    if len(value) > MAX_HOOK_ARGS:
        c.add(key, f"has more than {MAX_HOOK_ARGS} elements")
        return None
    for i, arg in enumerate(value):
        if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in arg) \
                or len(arg) > MAX_HOOK_ARG:
            c.add(f"{key}[{i}]", f"{shown(arg)} may not hold NUL, newlines, control or "
                  f"invisible format characters, nor be longer than {MAX_HOOK_ARG}")
            return None
    program = value[0]
    if not program or program != program.strip() or (
            "/" in program and not program.startswith("/")):
        c.add(f"{key}[0]", f"{shown(program)} must be an absolute path or a program name "
              "found on PATH")
        return None
    return tuple(value)


def parse_hooks(c: _Collector, value: object) -> Hooks | None:
    if not isinstance(value, dict):
        c.add("hooks", "must be a table ([hooks]) of argv lists, as on_failed = [...]")
        return None
    c.unknown_keys("hooks.", value, HOOK_KEYS)
    fields: dict[str, Any] = {}
    for state in HOOK_STATES:
        key = f"on_{state}"
        if key in value:
            fields[key] = _parse_hook_argv(c, f"hooks.{key}", value[key])
    if "timeout" in value:
        timeout = value["timeout"]
        if not isinstance(timeout, int) or isinstance(timeout, bool) \
                or not 1 <= timeout <= 3600:
            c.add("hooks.timeout", f"{shown(timeout)} must be a number of seconds, 1-3600")
        else:
            fields["timeout"] = timeout
    return Hooks(**{k: v for k, v in fields.items() if v is not None})


def hooks_to_mapping(hooks: Hooks) -> dict[str, Any]:
    """The ``[hooks]`` table for ``hooks``: only the states that have one, and a timeout
    other than the default."""
    out: dict[str, Any] = {f"on_{s}": list(hooks.for_state(s)) for s in HOOK_STATES
                           if hooks.for_state(s)}
    if hooks.timeout != DEFAULT_HOOK_TIMEOUT:
        out["timeout"] = hooks.timeout
    return out
