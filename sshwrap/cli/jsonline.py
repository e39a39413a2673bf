"""JSON lines for the express lane, written and read by CPython's own C codec (``_json``).

The json package imports ``re`` and costs the lane's process about ten milliseconds, a
twentieth of what ssh takes to start a tunnel on a fast link; its C half, which json itself
uses, costs a fraction of one. Where that half is missing (not CPython), json is used.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class _Reading:
    """What the C scanner asks of json.JSONDecoder: strict JSON, plain dicts, floats, ints."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.lower().replace("infinity", "inf"))


def _unserializable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _codec() -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    try:
        import _json

        encode = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii,
                                    None, ":", ",", False, False, True)
        scan = _json.make_scanner(_Reading())  # type: ignore[arg-type]  # any such object
    except (ImportError, AttributeError, TypeError):
        import json

        return json.dumps, json.loads

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    def loads(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration as error:
            raise ValueError(f"not JSON at {error.value}") from None
        if text[end:].strip():
            raise ValueError(f"extra data at {end}")
        return value

    return dumps, loads


dumps, loads = _codec()
