"""Completion in real zsh and fish: the generated scripts are loaded by the shells themselves
and a Tab (zsh) or ``complete -C`` (fish) completes profile names and tags."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

REPO = Path(__file__).resolve().parents[2]
# scripts/dev installs both shells for the test suite; a machine without one skips its tests.
needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
needs_fish = pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name, tag in (("mysql", "database"), ("maria", "database"), ("web", "http")):
        (profiles / f"{name}.toml").write_text(
            f'host = "{name}.example"\ntags = ["{tag}"]\n'
            '[[forward]]\ntype = "local"\nlisten = 8080\nto = "127.0.0.1:80"\n')
    # The scripts call ``sshwrap`` by name, as an installed copy is called.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "sshwrap"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m sshwrap "$@"\n')
    launcher.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "SSHWRAP_PROFILES": str(profiles), "HOME": str(home),
            "SSHWRAP_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO),
            "PATH": f"{bin_dir}:{os.environ['PATH']}", "TERM": "dumb"}


def _script(env: dict[str, str], shell: str, tmp_path: Path) -> Path:
    """The script ``--show-completion`` prints when called from ``shell``."""
    done = subprocess.run([shell, "-c", "sshwrap --show-completion; true"], env=env,
                          capture_output=True, text=True, check=True)
    script = tmp_path / f"sshwrap.{shell}"
    script.write_text(done.stdout)
    return script


@needs_fish
@pytest.mark.parametrize(("line", "expected"), [
    ("sshwrap down m", ["maria", "mysql"]),
    ("sshwrap check w", ["web"]),
    ("sshwrap up --tag d", ["database"]),
])
def test_fish_completes_names_and_tags(env: dict[str, str], tmp_path: Path, line: str,
                                       expected: list[str]) -> None:
    script = _script(env, "fish", tmp_path)
    assert subprocess.run(["fish", "-n", str(script)], check=False).returncode == 0
    done = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [row.split("\t")[0] for row in done.stdout.splitlines()] == expected


@needs_zsh
@pytest.mark.parametrize(("typed", "completed"), [
    ("sshwrap down my", "sshwrap down mysql "),
    ("sshwrap status w", "sshwrap status web "),
    ("sshwrap restart --tag h", "sshwrap restart --tag http "),
])
def test_zsh_completes_on_tab(env: dict[str, str], tmp_path: Path, typed: str,
                              completed: str) -> None:
    script = _script(env, "zsh", tmp_path)
    assert subprocess.run(["zsh", "-n", str(script)], check=False).returncode == 0
    shell = pexpect.spawn("zsh", ["-f", "-i"], env=env, encoding="utf-8", timeout=20,
                          dimensions=(24, 200))
    try:
        shell.sendline("PS1='READY> '; autoload -U compinit; compinit -u -D; "
                       f"source {script}")
        shell.expect("READY> ")  # the echo of the line itself
        shell.expect("READY> ")
        shell.send(typed + "\t")
        # The line is redrawn with the word completed (and a space after a unique match).
        shell.expect_exact(completed)
    finally:
        shell.sendcontrol("c")
        shell.sendline("exit")
        shell.close(force=True)
