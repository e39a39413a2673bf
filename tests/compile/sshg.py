"""Ask real OpenSSH (``ssh -G``) what a compiled argv or config block means."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: Settings compared one value each.
SINGLE = (
    "hostname", "user", "port", "proxyjump", "compression", "serveraliveinterval",
    "exitonforwardfailure", "stricthostkeychecking",
)
#: Settings that may appear many times; compared as sorted lists.
MULTI = ("localforward", "remoteforward", "dynamicforward")
#: Directives that would run a command or redirect the connection if injected.
DANGEROUS = ("proxycommand", "localcommand", "remotecommand", "knownhostscommand")

View = dict[str, object]


class SshRejected(AssertionError):
    """``ssh -G`` refused its input (a bad option value, for instance)."""


def _run_g(args: Sequence[str]) -> str:
    done = subprocess.run(
        ["ssh", "-G", *args], capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise SshRejected(f"ssh -G {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def parse_g(output: str) -> dict[str, list[str]]:
    """Every ``key value`` line of ``ssh -G`` output, keys lower-case, values in order."""
    settings: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), []).append(value)
    return settings


def view(settings: dict[str, list[str]]) -> View:
    """The settings a tunnel depends on."""
    out: View = {key: settings[key][0] if key in settings else None for key in SINGLE}
    for key in MULTI:
        out[key] = sorted(settings.get(key, []))
    return out


def argv_settings(argv: Sequence[str]) -> dict[str, list[str]]:
    """``ssh -G`` over a compiled argv. ``-F /dev/null`` comes first so that the user's own
    config cannot colour the result; a ``-F`` in the argv still wins (ssh keeps the last)."""
    return parse_g(_run_g(["-F", "/dev/null", *argv[1:]]))


def config_settings(block: str, host: str) -> dict[str, list[str]]:
    """``ssh -G -F FILE HOST`` over a compiled Host block."""
    with tempfile.TemporaryDirectory(prefix="sshwrap-g-") as tmp:
        path = Path(tmp) / "config"
        path.write_text(block)
        return parse_g(_run_g(["-F", str(path), host]))
