"""Helpers of the authentication tests: a password server, profiles, the CLI."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sshwrap.sandbox import ClientIdentity, Sshd
from tests.helpers import run_sshwrap, sshd_profile

#: Client settings that leave the password as the only way in.
KEYLESS_CLIENT = "    PubkeyAuthentication no\n    KbdInteractiveAuthentication no\n"


@dataclass(frozen=True)
class PasswordServer:
    sshd: Sshd
    user: str
    password: str
    ssh_config: Path  # trusts the server's key, offers no key: only the password can work

    def failed_passwords(self) -> int:
        return self.sshd.log_path.read_text().count(f"Failed password for {self.user} ")


def write_profile(profiles_dir: Path, name: str, data: dict[str, Any]) -> Path:
    path = profiles_dir / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_sshwrap(*args, env=env, stdin=stdin)


def password_profile(server: PasswordServer, target: int, listen: int,
                     **keys: object) -> dict[str, Any]:
    """A profile of ``server``'s user with auth = "password" (from ``keys``: password_env or
    password_keyring), through a config that offers no key."""
    return sshd_profile(server.sshd, target, listen, user=server.user, **{
        "ssh_config_file": str(server.ssh_config), "auth": "password", **keys})


@contextlib.contextmanager
def throwaway_password_server(tmp_path_factory: pytest.TempPathFactory, prefix: str, *,
                              client_settings: str = KEYLESS_CLIENT,
                              sshd_settings: Mapping[str, str] | None = None,
                              ) -> Iterator[PasswordServer]:
    """A user of its own (``prefix`` + pid, so that folders of tests may run in one session)
    with a random password, and an sshd that accepts passwords; root only, as the user is
    made with useradd and removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("chpasswd"):
        pytest.skip("needs root and useradd/chpasswd to create a throwaway user")
    user = f"{prefix}{os.getpid() % 100000}"
    password = "pw-" + secrets.token_hex(12)
    home = tmp_path_factory.mktemp(f"{prefix}home")
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", user], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
        root = tmp_path_factory.mktemp(f"{prefix}sshd")
        client = ClientIdentity(root / "client")
        config = root / "password_ssh_config"
        config.write_text(f"Host *\n    UserKnownHostsFile {client.known_hosts}\n"
                          "    GlobalKnownHostsFile /dev/null\n    UpdateHostKeys no\n"
                          + client_settings)
        with Sshd(root / "server", client, user=user,
                  extra_config={"PasswordAuthentication": "yes", **(sshd_settings or {})},
                  ) as server:
            yield PasswordServer(server, user, password, config)
    finally:
        subprocess.run(["userdel", user], check=False)
