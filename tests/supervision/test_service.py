"""systemd units: the compiled unit runs the engine in the foreground; golden files; without
systemd nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.systemd import compile_systemd, unit_name
from sshwrap.core.parse import parse_profile
from sshwrap.errors import ExitCode, MissingBinary
from sshwrap.store import ProfileStore, load_profile_file
from sshwrap.usecases import service
from tests.compile.golden import check_golden

PROFILE = 'host = "db.example"\n[[forward]]\ntype = "local"\nlisten = 5432\nto = "db:5432"\n'
REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
ENV = {"SSHWRAP_PROFILES": "/home/me/.config/sshwrap/profiles",
       "SSHWRAP_STATE_DIR": "/home/me/.local/state/sshwrap"}


@pytest.mark.parametrize("example", sorted((REPO / "profiles").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_golden(example: Path, request: pytest.FixtureRequest) -> None:
    try:
        actual = compile_systemd(load_profile_file(example), python="/usr/bin/python3",
                                 environment=ENV)
    except NotExpressible as exc:
        actual = f"not expressible: {exc}\n"
    check_golden(GOLDEN / f"{example.stem}.systemd", actual, request)


def test_unit_runs_the_engine_in_the_foreground_with_its_environment() -> None:
    import tomllib

    profile = parse_profile("db", tomllib.loads(PROFILE))
    unit = compile_systemd(profile, python="/opt/py/bin/python3",
                           environment={"SSHWRAP_PROFILES": "/home/u/p",
                                        "SSHWRAP_STATE_DIR": "/home/u/state"})
    lines = unit.splitlines()
    assert "ExecStart=/opt/py/bin/python3 -m sshwrap --engine --foreground --up db" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines  # the engine reloads on SIGHUP
    assert 'Environment="SSHWRAP_PROFILES=/home/u/p"' in lines
    assert 'Environment="SSHWRAP_STATE_DIR=/home/u/state"' in lines
    assert "Restart=on-failure" in lines and "KillMode=mixed" in lines
    assert "WantedBy=default.target" in lines
    assert unit_name("db") == "sshwrap-db.service"
    with pytest.raises(ValueError, match="cannot be written"):
        compile_systemd(profile, environment={"SSHWRAP_PROFILES": 'a"b'})


def _store(tmp_path: Path) -> ProfileStore:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "db.toml").write_text(PROFILE)
    return ProfileStore((folder,))


def test_install_without_systemd_says_so_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(service, "SYSTEMD_RUNTIME_DIR", tmp_path / "no-systemd")

    with pytest.raises(MissingBinary) as raised:
        service.install(_store(tmp_path), "db")

    assert raised.value.exit_code is ExitCode.MISSING_BINARY
    assert "does not run systemd" in raised.value.message
    assert not (tmp_path / "config").exists()


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this machine runs systemd")
def test_cli_service_install_exits_3_here(tmp_path: Path) -> None:
    store = _store(tmp_path)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "SSHWRAP_PROFILES": str(store.dirs[0]), "SSHWRAP_STATE_DIR": str(tmp_path / "s")}
    done = subprocess.run([sys.executable, "-m", "sshwrap", "service", "install", "db"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 3, done.stderr
    assert "sshwrap: error:" in done.stderr and "systemd" in done.stderr
    assert not (tmp_path / "config").exists()


def test_cli_compile_to_systemd_prints_the_engine_unit(tmp_path: Path) -> None:
    store = _store(tmp_path)
    env = {**os.environ, "SSHWRAP_PROFILES": str(store.dirs[0]),
           "SSHWRAP_STATE_DIR": str(tmp_path / "s")}
    done = subprocess.run([sys.executable, "-m", "sshwrap", "compile", "db", "--to", "systemd"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert f"ExecStart={sys.executable} -m sshwrap --engine --foreground --up db" in done.stdout
    assert f'Environment="SSHWRAP_PROFILES={store.dirs[0].resolve()}"' in done.stdout
