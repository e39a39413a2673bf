"""Set-up shared by the test folders: the command line as a subprocess (as another user too),
and profiles of one local forward through a sandbox sshd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
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


REPO = Path(__file__).resolve().parent.parent


def _closed_to_others(path: str) -> bool:
    """Whether a user other than the owner cannot pass through some folder above ``path``."""
    folder = Path(path)
    return any(not os.stat(parent).st_mode & 0o001 for parent in [folder, *folder.parents])


def as_user(uid: int, gid: int, argv: list[str]) -> list[str]:
    """``argv`` (starting with this interpreter) run as ``uid``:``gid`` with no groups.

    A Python or a checkout under a folder closed to others (a pyenv build in /root) would
    not start for that user, so both are bind-mounted, in a mount namespace of the command's
    own, where every user can reach them; nothing outside that namespace changes.
    """
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    prefix = os.path.realpath(sys.base_prefix)
    if not (_closed_to_others(prefix) or _closed_to_others(str(REPO))):
        return [*setpriv, *argv]
    executable = os.path.relpath(os.path.realpath(argv[0]), prefix)
    # Found again from the moved prefix, site-packages is not always on the path: named.
    packages = [f"/mnt/python/{os.path.relpath(entry, prefix)}" for entry in sys.path
                if entry.endswith("-packages") and entry.startswith(prefix + os.sep)]
    script = ('mount -t tmpfs -o mode=0755 none /mnt && mkdir /mnt/python /mnt/repo '
              '&& mount --bind "$0" /mnt/python && mount --bind "$1" /mnt/repo '
              '&& shift && exec "$@"')
    return ["unshare", "--mount", "--", "env",
            f"PYTHONPATH={':'.join(['/mnt/repo', *packages])}", "sh", "-c", script, prefix,
            str(REPO), *setpriv, f"/mnt/python/{executable}", *argv[1:]]
