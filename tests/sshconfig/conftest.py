"""Fixtures for ssh_config tests: a private ~/.ssh-like folder and profiles to sync into it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from sshwrap.store import ProfileStore

DATA = Path(__file__).resolve().parent.parent / "data" / "ssh-configs"

DB_PROFILE = """\
host = "db.example.net"
user = "alice"
port = 2222

[[forward]]
type = "local"
listen = 3307
to = "db.internal:3306"

[[forward]]
type = "dynamic"
listen = 1080

[[forward]]
type = "remote"
listen = 9022
to = "localhost:22"
"""


@dataclass
class Workspace:
    """A config file in a private folder, and a profile store beside it."""

    root: Path
    config: Path
    store: ProfileStore

    @property
    def owned(self) -> Path:
        return self.config.with_name("sshwrap.conf")

    def add_profile(self, name: str, text: str = DB_PROFILE) -> Path:
        path = self.store.write_dir / f"{name}.toml"
        path.write_text(text)
        return path

    def use_corpus(self, name: str) -> bytes:
        shutil.copyfile(DATA / name, self.config)
        self.config.chmod(0o600)
        return self.config.read_bytes()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """Never the real ~/.ssh: HOME is a temp folder and every call names its --file."""
    home = tmp_path / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    monkeypatch.setenv("SSHWRAP_PROFILES", str(profiles))
    return Workspace(tmp_path, ssh_dir / "config", ProfileStore((profiles,)))
