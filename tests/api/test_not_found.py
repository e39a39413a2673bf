"""One way in: a missing profile is ProfileNotFound (exit 2, with where profiles are searched)
from every entry point that resolves a name, the Python API's and every command's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import sshwrap
from sshwrap.errors import ExitCode
from tests.helpers import run_sshwrap

SEARCHED = "profiles are searched in: "

#: Every way of naming a missing profile from Python.
API_CALLS: dict[str, Callable[[], object]] = {
    "up": lambda: sshwrap.up("nope"),
    "up of several": lambda: sshwrap.up("nope", "nope2"),
    "up with check=False": lambda: sshwrap.up("nope", check=False),
    "status": lambda: sshwrap.status("nope"),
    "Tunnel.from_profile": lambda: sshwrap.Tunnel.from_profile("nope"),
    "Tunnel.from_profile of a path": lambda: sshwrap.Tunnel.from_profile("gone/nope.toml"),
}

#: Every command that takes a profile NAME (down acts on running tunnels, logs on a log).
COMMANDS = [
    ("validate", "nope"), ("compile", "nope"), ("compile", "nope", "--to", "config"),
    ("up", "nope"), ("up", "nope", "--json"), ("restart", "nope"), ("status", "nope"),
    ("check", "nope"), ("trust", "nope"), ("config", "sync", "nope"),
    ("service", "install", "nope"), ("password", "set", "nope"), ("validate", "nope.toml"),
]


@pytest.mark.parametrize("call", API_CALLS.values(), ids=API_CALLS.keys())
def test_the_api_raises_profile_not_found(call: Callable[[], object], profiles_dir: Path,
                                          state_dir: Path) -> None:
    with pytest.raises(sshwrap.ProfileNotFound) as caught:
        call()
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "'nope'" in str(caught.value) or "no such file" in str(caught.value)
    assert not state_dir.exists() or not any(state_dir.glob("tunnels/*")), "nothing started"


def test_a_missing_profile_among_bad_ones_is_still_profile_not_found(
        profiles_dir: Path, state_dir: Path) -> None:
    (profiles_dir / "broken.toml").write_text('host = "h"\n')
    with pytest.raises(sshwrap.ProfileNotFound) as caught:
        sshwrap.up("broken", "nope")
    assert len(caught.value.problems) == 2 and SEARCHED in caught.value.hint
    # Only bad profiles: no profile is missing, so the error says so by its kind.
    with pytest.raises(sshwrap.InvalidInput) as invalid:
        sshwrap.up("broken")
    assert type(invalid.value) is sshwrap.InvalidInput


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_reports_a_missing_profile_alike(argv: tuple[str, ...],
                                                       profiles_dir: Path,
                                                       state_dir: Path) -> None:
    ran = run_sshwrap(*argv, timeout=60)
    assert ran.returncode == ExitCode.BAD_INPUT, ran.stderr
    lines = ran.stderr.splitlines()
    assert lines[0].startswith("sshwrap: error: nope"), ran.stderr
    assert "no profile" in lines[0] or "no such file" in lines[0], ran.stderr
    if argv[-1].endswith(".toml"):  # a path: no directory was searched
        assert lines == ["sshwrap: error: nope.toml: no such file"]
    elif argv[0] == "status":  # running tunnels are names too
        assert lines[1] == "hint: see 'sshwrap list'"
    else:
        assert lines[1].startswith(f"hint: {SEARCHED}{profiles_dir}"), ran.stderr
    assert ran.stdout == ""
