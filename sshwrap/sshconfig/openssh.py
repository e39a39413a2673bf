"""Ask OpenSSH itself (``ssh -G``) what a config file means, safely and with a time limit."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sshwrap.errors import InvalidInput, MissingBinary, Problem

#: ``ssh -G`` runs ``Match exec`` commands and may look names up (CanonicalizeHostname).
TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Dump:
    """What ``ssh -G`` printed for one host, or its complaint."""

    ok: bool
    stdout: str
    stderr: str


def find_ssh(program: str = "ssh") -> str:
    found = shutil.which(program)
    if not found:
        raise MissingBinary(f"{program} is not installed",
                            hint="install OpenSSH's client: apt-get install openssh-client")
    return found


def scrubbed_env() -> dict[str, str]:
    """A client's environment (runtime/system/detach.py CLIENT_ENVIRONMENT) with the system's
    PATH: ``Match exec`` commands see no secrets from ours."""
    from sshwrap.runtime.system.detach import client_environment

    env = client_environment()
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def login_home() -> Path:
    """The home ssh uses for ``~`` and relative Includes: the passwd entry, not $HOME."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def dump(config: Path, host: str, *, program: str = "ssh", extra: tuple[str, ...] = ()) -> Dump:
    """``ssh -G -F CONFIG [EXTRA] -- HOST`` with a scrubbed environment and a time limit."""
    argv = [find_ssh(program), "-G", "-F", str(config), *extra, "--", host]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL,
            env=scrubbed_env(), timeout=TIMEOUT_SECONDS, check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidInput(
            Problem(f"'ssh -G' did not finish within {TIMEOUT_SECONDS:.0f} s for {host!r}",
                    file=str(config)),
            hint="a 'Match exec' command or a name lookup in the config may hang",
        ) from None
    stderr = "\n".join(
        line for line in done.stderr.splitlines()
        if not line.startswith("Pseudo-terminal will not be allocated")
    )
    return Dump(done.returncode == 0, done.stdout, stderr)
