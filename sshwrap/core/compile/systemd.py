"""Compile a Profile to a systemd user unit that runs sshwrap's engine in the foreground."""

from __future__ import annotations

from collections.abc import Mapping

from sshwrap.core.binds import HostFacts
from sshwrap.core.model import Client, Profile
from sshwrap.textsafe import shown

#: The unit's own Restart= is only a backstop: the engine restarts the client itself and
#: exits non-zero only on a fatal failure of the tunnel or a crash of its own.
BACKSTOP_RESTART = "on-failure"


def _exec_word(word: str) -> str:
    # systemd expands %-specifiers and $VARIABLES in ExecStart; escaping keeps words literal.
    escaped = word.replace("%", "%%").replace("$", "$$")
    if any(ch in escaped for ch in " \t\"'\\;\n"):
        raise ValueError(f"{shown(word)} cannot be written into a unit")
    return escaped


def _environment_line(name: str, value: str) -> str:
    if any(ch in value for ch in "\"\\\n") or not name.isidentifier():
        raise ValueError(f"{name}={shown(value)} cannot be written into a unit")
    return f'Environment="{name}={value.replace("%", "%%")}"'


def engine_argv(python: str, profile_name: str) -> list[str]:
    """The command a unit or agent runs: the engine in the foreground, with the tunnel."""
    return [python, "-m", "sshwrap", "--engine", "--foreground", "--up", profile_name]


def unit_name(profile_name: str) -> str:
    return f"sshwrap-{profile_name}.service"


def compile_systemd(
    profile: Profile,
    facts: HostFacts | None = None,
    *,
    python: str = "/usr/bin/python3",
    environment: Mapping[str, str] | None = None,
) -> str:
    """A ``[Unit]/[Service]/[Install]`` user unit running ``python -m sshwrap --engine
    --foreground --up NAME``: the engine of the state dir in the foreground, the same engine
    (and supervision, events, network watch, reload) as ``up``'s. When an engine serves the
    state dir already (another unit's, or ``up``'s), the tunnel is handed to it and this one
    waits to take over (runtime/engine/foreground.py), so ``sshwrap status/down/up`` see one engine.

    The engine logs to stderr, which systemd sends to the journal; SIGTERM stops its tunnels
    and exits 0, so a normal stop is no failure; SIGHUP (``systemctl reload``) is ``sshwrap
    reload``. ``environment`` carries the profile directories and the state directory
    (SSHWRAP_PROFILES, SSHWRAP_STATE_DIR).
    """
    del facts  # the engine expands binds on the machine it runs on
    from sshwrap.core.compile import NotExpressible
    from sshwrap.core.compile.values import require_parsed

    require_parsed(profile, "systemd")
    if profile.client is Client.PLINK:
        raise NotExpressible("systemd", "client", "the unit runs OpenSSH; use client = \"ssh\"")
    argv = engine_argv(python, profile.name)
    description = profile.description or f"sshwrap tunnel {profile.name}"
    lines = [
        "[Unit]",
        f"Description={description.replace('%', '%%')}",
        "Documentation=man:ssh(1)",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=exec",
        *(_environment_line(k, v) for k, v in sorted((environment or {}).items())),
        "ExecStart=" + " ".join(_exec_word(word) for word in argv),
        "ExecReload=/bin/kill -HUP $MAINPID",
        f"Restart={BACKSTOP_RESTART}",
        "RestartSec=5",
        "TimeoutStopSec=15",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"
