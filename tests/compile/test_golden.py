"""Compiled output of every example profile, compared exactly with tests/golden/."""

from __future__ import annotations

from pathlib import Path

import pytest

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import Profile
from sshwrap.store import load_profile_file
from tests.compile.golden import check_golden

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "profiles").glob("*.toml"))
GOLDEN = REPO / "tests" / "golden"
FACTS = HostFacts(ipv6_loopback=True)


def _render(profile: Profile, target: str) -> str:
    try:
        if target == "ssh":
            return "\n".join(compile_ssh(profile, FACTS)) + "\n"
        if target == "plink":
            return "\n".join(compile_plink(profile, FACTS)) + "\n"
        return compile_config(profile, FACTS)
    except NotExpressible as exc:
        return f"not expressible: {exc}\n"


def test_every_scenario_has_an_example() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"mysql", "web", "imap", "vpn", "socks", "remote", "git", "beta"} <= names


@pytest.mark.parametrize("target", ["ssh", "plink", "config"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden(example: Path, target: str, request: pytest.FixtureRequest) -> None:
    actual = _render(load_profile_file(example), target)
    check_golden(GOLDEN / f"{example.stem}.{target}", actual, request)
