"""Commands and terminal input around authentication: ``trust``, and up's hidden prompts."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from sshwrap.cli.base import JsonOpt, NameOrFileArg, ProfilesOpt, app
from sshwrap.cli.render import emit, to_text
from sshwrap.errors import ExitCode

if TYPE_CHECKING:
    from sshwrap.core.model import Profile
    from sshwrap.runtime.client.auth import AskSecret
    from sshwrap.usecases.trust import HopKeys, TrustReport


def terminal_asker(*, password: bool, passphrase: bool) -> AskSecret | None:
    """Hidden terminal input for password profiles (and, asked for, key passphrases)."""
    if not password and not passphrase:
        return None

    def ask(profile: Profile) -> str | None:
        import getpass

        from sshwrap.core.model import AuthMethod
        from sshwrap.textsafe import shown

        where = shown(f"{profile.user + '@' if profile.user else ''}{profile.host}")
        if profile.auth is AuthMethod.PASSWORD and password:
            return getpass.getpass(f"Password for {profile.name} ({where}): ")
        if profile.auth is AuthMethod.KEY and passphrase:
            key = profile.identity_file or "the key"
            return getpass.getpass(f"Passphrase of {shown(key)} for {profile.name}: ") or None
        return None

    return ask


def _hop_lines(hop: HopKeys) -> list[str]:
    known_as = f" (known_hosts name {hop.known_as})" if hop.known_as else ""
    lines = [f"{hop.label}: {hop.host} port {hop.port}{known_as}"]
    lines += [f"  {key_type} {fp}" for key_type, fp in hop.keys]
    return lines


def _render_trust(report: TrustReport) -> str:
    from sshwrap.usecases.trust import KeyStatus

    lines: list[str] = []
    for hop in report.hops:
        lines += _hop_lines(hop)
        status = hop.status
        if status is KeyStatus.PIN:
            pin = hop.keys[0][1] if hop.keys else "SHA256:..."
            lines.append(f"  plink keeps no known_hosts: pin it in the profile: "
                         f"host_key = \"{pin}\"")
        elif status is not None:
            lines.append(f"  {status.value} ({hop.known_hosts})")
    return "\n".join(lines)


@app.command()
def trust(
    name: NameOrFileArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Trust without asking.")] = False,
    json_out: JsonOpt = False,
    profiles: ProfilesOpt = None,
) -> int:
    """Show each hop's host key fingerprint (ssh-keyscan) and add it to known_hosts."""
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.trust import trust as run_trust

    def confirm(hop: HopKeys) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        from sshwrap.textsafe import safe_lines

        sys.stderr.write(safe_lines("\n".join(_hop_lines(hop))) + "\n")
        sys.stderr.write("Compare these with the fingerprints the server's administrator "
                         "gives you.\n")
        return typer.confirm(f"Trust the {safe_lines(hop.label)}?", default=False, err=True)

    report = run_trust(ProfileStore.from_option(profiles), name, confirm=confirm)
    to_text.register(type(report), _render_trust)
    emit(report, as_json=json_out)
    from sshwrap.usecases.trust import KeyStatus

    declined = any(h.status is KeyStatus.DECLINED for h in report.hops)
    if declined and not yes and not sys.stdin.isatty():
        sys.stderr.write("hint: nothing was trusted: confirm on a terminal, or pass --yes\n")
    return int(ExitCode.AUTH) if declined else int(ExitCode.OK)
