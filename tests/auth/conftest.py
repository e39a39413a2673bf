"""Fixtures of the authentication tests: a throwaway user with a password, and an sshd that
accepts passwords (root only: the user is created with useradd and removed afterwards)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.sandbox import ClientIdentity, Sshd
from tests.auth.auth_helpers import PasswordServer, run_cli


@pytest.fixture(scope="session")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordServer]:
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("chpasswd"):
        pytest.skip("needs root and useradd/chpasswd to create a throwaway user")
    user = f"swpw{os.getpid() % 100000}"
    password = "pw-" + secrets.token_hex(12)
    home = tmp_path_factory.mktemp("pwhome")
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", user], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
        root = tmp_path_factory.mktemp("pwsshd")
        client = ClientIdentity(root / "client")
        server = Sshd(root / "server", client, user=user,
                      extra_config={"PasswordAuthentication": "yes"})
        server.start()
        config = root / "password_ssh_config"
        config.write_text(
            "Host *\n"
            f"    UserKnownHostsFile {client.known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    PubkeyAuthentication no\n"
            "    KbdInteractiveAuthentication no\n"
            "    UpdateHostKeys no\n")
        try:
            yield PasswordServer(server, user, password, config)
        finally:
            server.stop()
    finally:
        subprocess.run(["userdel", user], check=False)


@pytest.fixture
def stop_all(state_dir: Path, profiles_dir: Path) -> Iterator[None]:
    """Stops every tunnel the test started."""
    yield
    done = run_cli("down", "--all", "--profiles", str(profiles_dir))
    assert done.returncode == 0, done.stderr


@pytest.fixture(autouse=True)
def _private_state(state_dir: Path) -> Path:
    """Every test here runs in a state dir of its own: the engine a test starts is shut down
    after it, and a failure it keeps stays there."""
    return state_dir
