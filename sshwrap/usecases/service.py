"""systemd user units of tunnels: render, install (enable --now), uninstall, status."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.systemd import compile_systemd, unit_name
from sshwrap.errors import InvalidInput, MissingBinary, Problem, SshwrapError
from sshwrap.fsutil import atomic_write
from sshwrap.runtime.system.paths import STATE_DIR_ENV, StatePaths
from sshwrap.store import ProfileStore

SYSTEMD_RUNTIME_DIR = Path("/run/systemd/system")
NO_SYSTEMD_HINT = ("run the tunnel with 'sshwrap up NAME' instead (the same engine supervises "
                   "and restarts it), or print a unit with 'sshwrap compile NAME --to systemd'")


@dataclass(frozen=True)
class ServiceReport:
    name: str
    unit: str
    unit_path: str
    action: str  # installed, uninstalled, not-installed, status
    active: str = ""  # systemctl is-active: active, inactive, failed, ...
    enabled: str = ""  # systemctl is-enabled


def unit_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "systemd" / "user"


def unit_environment(store: ProfileStore, paths: StatePaths | None = None) -> dict[str, str]:
    """What the unit must pass so that its engine finds the same profiles, and serves the same
    state dir (one engine, whether ``up`` or a unit started it)."""
    paths = paths or StatePaths.from_env()
    return {"SSHWRAP_PROFILES": ":".join(str(d.resolve()) for d in store.dirs),
            STATE_DIR_ENV: str(paths.root.resolve())}


def render_unit(store: ProfileStore, name: str, paths: StatePaths | None = None) -> str:
    profile = store.load(name)
    try:
        return compile_systemd(profile, python=sys.executable,
                               environment=unit_environment(store, paths))
    except NotExpressible as exc:
        raise InvalidInput(Problem(f"{exc.message} (systemd cannot express it)", key=exc.key,
                                   file=profile.source or profile.name)) from None
    except ValueError as exc:
        raise InvalidInput(Problem(str(exc), file=profile.source or profile.name)) from None


def require_systemd() -> str:
    """systemctl's path when a systemd user manager can be driven; MissingBinary (exit 3)
    otherwise, before anything is written."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not SYSTEMD_RUNTIME_DIR.is_dir():
        raise MissingBinary("this machine does not run systemd (no systemctl, or no "
                            f"{SYSTEMD_RUNTIME_DIR})", hint=NO_SYSTEMD_HINT)
    probe = subprocess.run([systemctl, "--user", "show-environment"], capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        reason = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else \
            f"exit status {probe.returncode}"
        raise MissingBinary(f"systemctl --user does not work here: {reason}",
                            hint="log in to a session with a systemd user manager (or enable "
                                 "lingering: loginctl enable-linger); " + NO_SYSTEMD_HINT)
    return systemctl


def _systemctl(systemctl: str, *args: str, check: bool = True) -> str:
    done = subprocess.run([systemctl, "--user", *args], capture_output=True, text=True,
                          check=False)
    if check and done.returncode != 0:
        raise SshwrapError(f"systemctl --user {' '.join(args)} failed: "
                           f"{done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def install(store: ProfileStore, name: str) -> ServiceReport:
    text = render_unit(store, name)  # bad input is reported before systemd is asked
    systemctl = require_systemd()
    unit = unit_name(name)
    path = unit_dir() / unit
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode=0o644)
    _systemctl(systemctl, "daemon-reload")
    _systemctl(systemctl, "enable", "--now", unit)
    return ServiceReport(name, unit, str(path), "installed",
                         _systemctl(systemctl, "is-active", unit, check=False),
                         _systemctl(systemctl, "is-enabled", unit, check=False))


def uninstall(name: str) -> ServiceReport:
    systemctl = require_systemd()
    unit = unit_name(name)
    path = unit_dir() / unit
    if not path.exists():
        return ServiceReport(name, unit, str(path), "not-installed")
    _systemctl(systemctl, "disable", "--now", unit, check=False)
    path.unlink()
    _systemctl(systemctl, "daemon-reload")
    return ServiceReport(name, unit, str(path), "uninstalled")


def status(name: str) -> ServiceReport:
    systemctl = require_systemd()
    unit = unit_name(name)
    path = unit_dir() / unit
    if not path.exists():
        return ServiceReport(name, unit, str(path), "not-installed")
    return ServiceReport(name, unit, str(path), "status",
                         _systemctl(systemctl, "is-active", unit, check=False),
                         _systemctl(systemctl, "is-enabled", unit, check=False))
