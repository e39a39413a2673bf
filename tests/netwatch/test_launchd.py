"""compile --to launchd: a LaunchAgent plist running the engine, golden files, bad input."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.launchd import agent_label, compile_launchd
from sshwrap.store import load_profile_file
from tests.compile.golden import check_golden

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "profiles").glob("*.toml"))
GOLDEN = REPO / "tests" / "golden"
ENV = {"SSHWRAP_PROFILES": "/home/me/.config/sshwrap/profiles",
       "SSHWRAP_STATE_DIR": "/home/me/.local/state/sshwrap"}


def _render(example: Path) -> str:
    try:
        return compile_launchd(load_profile_file(example), python="/usr/bin/python3",
                               environment=ENV)
    except NotExpressible as exc:
        return f"not expressible: {exc}\n"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden(example: Path, request: pytest.FixtureRequest) -> None:
    actual = _render(example)
    check_golden(GOLDEN / f"{example.stem}.launchd", actual, request)


def test_plist_runs_the_engine_in_the_foreground() -> None:
    profile = load_profile_file(REPO / "profiles" / "web.toml")
    job = plistlib.loads(compile_launchd(profile, python="/opt/py/bin/python3",
                                         environment=ENV).encode())
    assert job["Label"] == agent_label("web") == "org.sshwrap.web"
    assert job["ProgramArguments"] == ["/opt/py/bin/python3", "-m", "sshwrap", "--engine",
                                       "--foreground", "--up", "web"]
    assert job["RunAtLoad"] is True
    # A stop (exit 0) is final; only a crash is restarted by launchd.
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["EnvironmentVariables"] == ENV


def test_a_plink_profile_is_not_expressible(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('host = "h"\nclient = "plink"\n'
                    '[[forward]]\ntype = "local"\nlisten = 8080\nto = "db:80"\n')
    with pytest.raises(NotExpressible, match="client"):
        compile_launchd(load_profile_file(path))


def test_cli_compile_to_launchd(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "db.toml").write_text('host = "db.example"\n[[forward]]\ntype = "local"\n'
                                      'listen = 5432\nto = "127.0.0.1:5432"\n')
    env = {**os.environ, "SSHWRAP_PROFILES": str(profiles),
           "SSHWRAP_STATE_DIR": str(tmp_path / "s")}
    done = subprocess.run([sys.executable, "-m", "sshwrap", "compile", "db", "--to", "launchd"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    job = plistlib.loads(done.stdout.encode())
    assert job["ProgramArguments"] == [sys.executable, "-m", "sshwrap", "--engine",
                                       "--foreground", "--up", "db"]
    assert job["EnvironmentVariables"]["SSHWRAP_PROFILES"] == str(profiles.resolve())
    assert not (tmp_path / "s").exists()  # compiling starts and writes nothing
