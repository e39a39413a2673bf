"""Set-up shared by the test folders: the command line as a subprocess, and profiles of
one local forward through a sandbox sshd."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from sshwrap.sandbox import Sshd


def run_sshwrap(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
                text: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[Any]:
    """``python -m sshwrap ARGS``, its output captured; stdin is empty unless given."""
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=text, check=False, env=env, timeout=timeout, input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None)


def local_forward(listen: int | str, target: int) -> dict[str, Any]:
    """A ``[[forward]]`` from ``listen`` to 127.0.0.1:``target`` on the server's side."""
    return {"type": "local", "listen": listen, "to": f"127.0.0.1:{target}"}


def sshd_profile(sshd: Sshd, target: int, listen: int | str, *, user: str | None = None,
                 **keys: object) -> dict[str, Any]:
    """A profile reaching ``sshd`` (as ``user``, its own user by default) with one local
    forward to its ``target`` port, never restarted; ``keys`` add to it or replace."""
    data: dict[str, Any] = {"host": "127.0.0.1", "port": sshd.port, "user": user or sshd.user,
                            "restart": "no", "forward": [local_forward(listen, target)]}
    data.update(keys)
    return data
