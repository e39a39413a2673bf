"""The express lane's JSON lines: the json package's own results, without importing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.cli import jsonline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", [
    {"op": "up", "names": ["db", "wiki"], "all": False, "tag": None, "wait": 2.5,
     "env": {"HOME": "/home/é", "X": "a\"b\\c\n\u2028\x1b[31m"}},
    {"exit": 6, "stdout": "", "stderr": "sshwrap: db: refused\n"}, [], {}, "", 1e300, -0.0, 7,
])
def test_it_writes_and_reads_what_json_does(value: object) -> None:
    assert jsonline.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert jsonline.loads(json.dumps(value)) == value
    assert jsonline.loads(json.dumps(value) + "\n") == value


@pytest.mark.parametrize("text", ["", "{", "{\"a\": 1", "{} {}", "x", "{'a': 1}"])
def test_what_is_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsonline.loads(text)


def test_what_json_cannot_write_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        jsonline.dumps({"a": object()})


def test_the_lane_imports_neither_json_nor_re() -> None:
    # Both cost the lane's process a twentieth of ssh's own start on a fast link.
    code = ("import sys; from sshwrap.cli import express, jsonline; "
            "jsonline.loads(jsonline.dumps({'a': [1, 2.5, None]})); "
            "print(sorted({'json', 're'} & set(sys.modules)))")
    ran = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(REPO)!r}); {code}"], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"
