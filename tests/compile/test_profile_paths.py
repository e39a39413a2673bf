"""Relative file paths in a profile are taken from the profile's own folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from sshwrap.errors import InvalidInput
from sshwrap.store import ProfileStore

BASE = 'host = "h"\n[[forward]]\ntype = "dynamic"\nlisten = 1080\n'


def test_relative_paths_are_anchored_to_the_profile_folder(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "rel.toml").write_text(
        'identity_file = "keys/id_ed25519"\nssh_config_file = "../ssh/config"\n' + BASE)
    (folder / "abs.toml").write_text(
        'identity_file = "~/.ssh/id"\nssh_config_file = "/etc/ssh/ssh_config"\n' + BASE)

    rel = ProfileStore((folder,)).load("rel")
    kept = ProfileStore((folder,)).load("abs")

    assert rel.identity_file == str(folder / "keys" / "id_ed25519")
    assert rel.ssh_config_file == str(folder / ".." / "ssh" / "config")
    assert (kept.identity_file, kept.ssh_config_file) == ("~/.ssh/id", "/etc/ssh/ssh_config")


def test_a_folder_ssh_could_not_be_given_is_bad_input_naming_file_and_key(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "my profiles"
    folder.mkdir()
    path = folder / "rel.toml"
    path.write_text('identity_file = "id"\n' + BASE)

    with pytest.raises(InvalidInput) as raised:
        ProfileStore((folder,)).load("rel")

    (line,) = raised.value.lines()
    assert line.startswith(f"{path}: identity_file: relative path taken from the profile's")
