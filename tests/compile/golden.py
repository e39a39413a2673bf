"""The one comparison of compiled output with its golden file (``pytest --update-golden``
rewrites the file instead)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest


def check_golden(golden: Path, actual: str, request: pytest.FixtureRequest) -> None:
    """Fail with a unified diff when ``actual`` is not the text of ``golden``."""
    if request.config.getoption("--update-golden"):
        golden.write_text(actual)
        return
    assert golden.exists(), f"{golden} is missing; run pytest --update-golden"
    expected = golden.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=str(golden), tofile="compiled"))
        pytest.fail(f"compiled output differs from {golden.name}:\n{diff}")
