"""Compile a Profile to a systemd user unit that runs the tunnel and lets systemd restart it."""

from __future__ import annotations

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import Client, Profile, RestartPolicy

RESTART = {
    RestartPolicy.NO: "no",
    RestartPolicy.ON_FAILURE: "on-failure",
    RestartPolicy.ALWAYS: "always",
}


def _exec_word(word: str) -> str:
    # systemd expands %-specifiers and $VARIABLES in ExecStart; profile values hold neither,
    # but escaping keeps the unit literal even if the rules for values ever widen.
    escaped = word.replace("%", "%%").replace("$", "$$")
    if any(ch in escaped for ch in " \t\"'\\;"):
        raise ValueError(f"{word!r} cannot be written into a unit")
    return escaped


def compile_systemd(
    profile: Profile,
    facts: HostFacts | None = None,
    *,
    ssh_program: str = "/usr/bin/ssh",
) -> str:
    """A ``[Unit]/[Service]/[Install]`` user unit running ``ssh -N`` in the foreground.

    ssh logs to stderr, which systemd sends to the journal; BatchMode keeps it from waiting
    on a prompt nobody can answer.
    """
    from sshwrap.core.compile import NotExpressible

    if profile.client is Client.PLINK:
        raise NotExpressible("systemd", "client", "the unit runs OpenSSH; use client = \"ssh\"")
    argv = compile_ssh(profile, facts, program=ssh_program,
                       extra_args=["-o", "BatchMode=yes"])
    description = profile.description or f"sshwrap tunnel {profile.name}"
    restart = RESTART[profile.restart]
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
        "ExecStart=" + " ".join(_exec_word(word) for word in argv),
        f"Restart={restart}",
        "RestartSec=2",
        "TimeoutStopSec=10",
        "KillMode=control-group",
        "NoNewPrivileges=yes",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"
