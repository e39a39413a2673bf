"""Every command that takes a NAME refuses one that is not a profile name, in one line."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import run_sshwrap

PROFILE = 'host = "db.example"\n[[forward]]\ntype = "local"\nlisten = 3307\nto = "db:3306"\n'

#: Every command with a NAME argument; True where a path to a .toml file is taken as well.
COMMANDS: list[tuple[tuple[str, ...], bool]] = [
    (("logs",), False), (("down",), False), (("status",), False),
    (("up",), True), (("restart",), True), (("check",), True), (("trust", "--yes"), True),
    (("compile",), True), (("validate",), True), (("config", "sync", "--dry-run"), True),
    (("service", "install"), True), (("service", "uninstall"), False),
    (("service", "status"), False), (("add", "--host", "db.example"), False),
]
BAD_NAMES = ["../../../../var/log/dpkg", "..", "a/b", ".hidden", "-", "x" * 65,
             "tab\tname", "esc\x1b[2Jname", "bidi\u202ename"]


_sshwrap = partial(run_sshwrap, text=False, timeout=60)


def _tree(root: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"")
                  for p in root.rglob("*"))


@pytest.mark.parametrize(("command", "file_ok"), COMMANDS, ids=lambda c: " ".join(c)
                         if isinstance(c, tuple) else str(c))
def test_a_name_that_is_not_a_profile_name_is_refused(
        command: tuple[str, ...], file_ok: bool, tmp_path: Path, state_dir: Path,
        profiles_dir: Path) -> None:
    (profiles_dir / "db.toml").write_text(PROFILE)
    before = _tree(tmp_path)
    for name in BAD_NAMES:
        done = _sshwrap(*command, name)
        assert done.returncode == 2, (name, done.stderr)
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sshwrap: error: NAME: "), done.stderr
        assert b"\x1b" not in done.stderr and "\u202e".encode() not in done.stderr
        assert "is not a profile name" + (" or a path to a .toml file" if file_ok else "") \
            in lines[0]
        assert not done.stdout
    assert _tree(tmp_path) == before  # nothing written, nothing started
    assert not state_dir.exists()


def test_logs_never_prints_a_file_outside_the_state_dir(tmp_path: Path,
                                                        state_dir: Path) -> None:
    secret = tmp_path / "secret.log"
    secret.write_text("not for sshwrap logs\n")
    (state_dir / "logs").mkdir(parents=True)
    name = os.path.relpath(secret, state_dir / "logs").removesuffix(".log")
    done = _sshwrap("logs", name)
    assert done.returncode == 2 and b"not for sshwrap logs" not in done.stdout + done.stderr


def test_a_path_to_a_toml_file_is_still_taken_where_it_was(tmp_path: Path,
                                                           profiles_dir: Path) -> None:
    outside = tmp_path / "elsewhere" / "db.toml"
    outside.parent.mkdir()
    outside.write_text(PROFILE)
    done = _sshwrap("compile", str(outside))
    assert done.returncode == 0, done.stderr
    assert b"db.example" in done.stdout
    assert _sshwrap("validate", str(outside)).returncode == 0


def test_a_huge_name_is_not_echoed_whole(state_dir: Path) -> None:
    done = _sshwrap("down", "/" * 100_000)
    assert done.returncode == 2 and len(done.stderr) < 1000
    assert b"... (100000 characters)" in done.stderr
