"""Facts about this machine that change how forwards are compiled (read, never assumed)."""

from __future__ import annotations

import socket

from sshwrap.core.binds import HostFacts


def host_facts() -> HostFacts:
    """Facts about this machine that change how forwards are compiled."""
    return HostFacts(ipv6_loopback=has_ipv6_loopback())


def has_ipv6_loopback() -> bool:
    """True when [::1] can be bound here (not when IPv6 is disabled or absent)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
