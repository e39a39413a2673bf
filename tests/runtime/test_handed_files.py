"""Files sshwrap names to ssh or ssh-keygen (a profile's ssh_config_file and identity_file,
the known_hosts files ssh's config names) that are FIFOs: refused at once, naming the file
and the key (exit 2), where ssh would have waited on them for ever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.runtime.test_state_dir import base, sshwrap

__all__ = ["base"]  # the fixture, shared with test_state_dir.py

PROFILE = ('host = "127.0.0.1"\nport = 1\nuser = "nobody"\nrestart = "no"\n{extra}'
           '[[forward]]\ntype = "local"\nlisten = 18998\nto = "127.0.0.1:22"\n')


@pytest.fixture
def profiles(base: Path) -> Path:
    folder = base / "profiles"
    folder.mkdir()
    return folder


def _profile(profiles: Path, extra: str) -> Path:
    path = profiles / "fifo.toml"
    path.write_text(PROFILE.format(extra=extra))
    return path


@pytest.mark.parametrize("command", ["up", "check", "trust"])
@pytest.mark.parametrize("key", ["ssh_config_file", "identity_file"])
def test_a_fifo_given_to_ssh_is_refused_naming_file_and_key(base: Path, profiles: Path,
                                                            key: str, command: str) -> None:
    fifo = base / "fifo"
    os.mkfifo(fifo)
    profile = _profile(profiles, f'{key} = "{fifo}"\n')

    done = sshwrap([command, "fifo"], base / "state", profiles)  # a hang: TimeoutExpired

    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{profile}: {key}: {fifo} is a FIFO, not a regular file" in done.stderr
    assert len(done.stderr.splitlines()) == 2  # the error and its hint


def test_a_fifo_known_hosts_named_by_the_config_is_refused(base: Path,
                                                           profiles: Path) -> None:
    fifo = base / "known_hosts"
    os.mkfifo(fifo)
    config = base / "ssh_config"
    config.write_text(f"UserKnownHostsFile {fifo}\n")
    _profile(profiles, f'ssh_config_file = "{config}"\n')

    done = sshwrap(["trust", "fifo", "--yes"], base / "state", profiles)

    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{config}: UserKnownHostsFile: {fifo} is a FIFO, not a regular file" \
        in done.stderr


def test_dev_null_stays_ssh_s_word_for_no_config(base: Path, profiles: Path) -> None:
    _profile(profiles, 'ssh_config_file = "/dev/null"\n')

    done = sshwrap(["up", "fifo"], base / "state", profiles)

    assert done.returncode == 6, done.stderr  # nothing listens on port 1: refused
    assert "not a regular file" not in done.stderr
