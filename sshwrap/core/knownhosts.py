"""How known_hosts names a host, and the ``ssh-keyscan`` line that records it under that name."""

from __future__ import annotations

import shlex


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def keyscan_command(host: str, port: int, alias: str, known_hosts: str) -> str:
    """``ssh-keyscan`` of the real host and port, the names rewritten to the HostKeyAlias when
    ssh uses one (ssh-keyscan would record ``[host]:port``, which ssh then never looks up)."""
    scan = f"ssh-keyscan -p {port} {shlex.quote(host)}"
    if alias:
        scan += f" | sed 's/^[^ ]*/{_sed_safe(alias)}/'"
    # "~/" stays unquoted so that the shell expands it
    target = known_hosts if known_hosts.startswith("~/") and shlex.quote(known_hosts[2:]) \
        == known_hosts[2:] else shlex.quote(known_hosts)
    return f"{scan} >> {target}"


def _sed_safe(text: str) -> str:
    # inside single quotes and a sed replacement: quote, backslash, slash and & are special
    return "".join("\\" + c if c in "\\/&" else c for c in text).replace("'", "'\\''")
