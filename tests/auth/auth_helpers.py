"""Helpers of the authentication tests: the password server's handle, profiles, the CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from sshwrap.sandbox import Sshd


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
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, check=False, env=env, input=stdin, timeout=120)
