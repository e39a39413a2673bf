"""Shell completion: scripts for bash, zsh and fish, and profile names and tags completed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name, tag in (("mysql", "database"), ("maria", "database"), ("web", "http")):
        (profiles / f"{name}.toml").write_text(
            f'host = "{name}.example"\ntags = ["{tag}"]\n'
            '[[forward]]\ntype = "local"\nlisten = 8080\nto = "127.0.0.1:80"\n')
    # A broken profile must not break completion of the others' names.
    (profiles / "broken.toml").write_text("host = \n")
    return {**os.environ, "SSHWRAP_PROFILES": str(profiles),
            "SSHWRAP_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(REPO)}


def _complete_bash(env: dict[str, str], words: str, cword: int) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "sshwrap"], capture_output=True, text=True, check=False,
        env={**env, "_SSHWRAP_COMPLETE": "complete_bash", "COMP_WORDS": words,
             "COMP_CWORD": str(cword)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.split()


@pytest.mark.parametrize("command", ["up", "down", "status", "check", "logs", "compile"])
def test_profile_names_are_completed(env: dict[str, str], command: str) -> None:
    assert _complete_bash(env, f"sshwrap {command} m", 2) == ["maria", "mysql"]


def test_every_name_is_offered_for_an_empty_word(env: dict[str, str]) -> None:
    assert _complete_bash(env, "sshwrap up ''", 2) == ["broken", "maria", "mysql", "web"]


@pytest.mark.parametrize("command", ["up", "restart"])
def test_tags_are_completed(env: dict[str, str], command: str) -> None:
    assert _complete_bash(env, f"sshwrap {command} --tag d", 3) == ["database"]
    assert _complete_bash(env, f"sshwrap {command} --tag ''", 3) == ["database", "http"]


def test_zsh_completion_of_names(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sshwrap"], capture_output=True, text=True, check=False,
        env={**env, "_SSHWRAP_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "sshwrap down w"})
    assert done.returncode == 0, done.stderr
    assert '"web"' in done.stdout and "mysql" not in done.stdout


def _shell_named(tmp_path: Path, shell: str) -> str:
    # The scripts are chosen by the name of the calling shell (typer asks shellingham, which
    # reads the parent process's name): bash under each name stands in for a shell that this
    # machine may not have installed.
    link = tmp_path / "bin" / shell
    link.parent.mkdir(exist_ok=True)
    link.symlink_to("/usr/bin/bash")
    return str(link)


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o default -F _sshwrap_completion sshwrap"),
    ("zsh", "#compdef sshwrap"),
    ("fish", "complete --command sshwrap"),
])
def test_show_completion_prints_the_script_of_the_shell(
    env: dict[str, str], tmp_path: Path, shell: str, marker: str
) -> None:
    # "; true" keeps the shell as the parent instead of exec'ing python in its place.
    done = subprocess.run([_shell_named(tmp_path, shell), "-c",
                           f"{sys.executable} -m sshwrap --show-completion; true"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert "_SSHWRAP_COMPLETE=complete_" + shell in done.stdout


def test_install_completion_writes_the_bash_script(env: dict[str, str], tmp_path: Path) -> None:
    home = Path(env["HOME"])
    home.mkdir()
    done = subprocess.run([_shell_named(tmp_path, "bash"), "-c",
                           f"{sys.executable} -m sshwrap --install-completion; true"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    script = home / ".bash_completions" / "sshwrap.sh"
    assert "_sshwrap_completion" in script.read_text()
    assert str(script) in (home / ".bashrc").read_text()


def test_a_command_line_is_built_without_the_completion_options(env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "sshwrap", "list", "--show-completion"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2
    assert "--show-completion" in done.stderr
