"""``listen = 0``: one free port per forward, the same port on every loopback family it binds."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import replace

from sshwrap.core.binds import HostFacts, expand_forward
from sshwrap.core.model import Forward, Profile, TcpAddress
from sshwrap.errors import ForwardingFailed

#: How many ports are tried for one forward before giving up (each is taken by someone else).
PORT_TRIES = 50


def wants_free_ports(profile: Profile) -> bool:
    """The profile has a forward with ``listen = 0``."""
    return any(isinstance(f.listen, TcpAddress) and f.listen.port == 0 for f in profile.forwards)


def _family(host: str) -> socket.AddressFamily | None:
    with contextlib.suppress(ValueError):
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    return None  # a name: ssh resolves it; not bound here


def _bind_all(hosts: list[str], port: int) -> int | None:
    """Bind ``port`` (0: any) on every host at once; the port if all took it, else None."""
    held: list[socket.socket] = []
    try:
        for host in hosts:
            family = _family(host)
            if family is None:
                continue
            sock = socket.socket(family, socket.SOCK_STREAM)
            held.append(sock)
            # As ssh binds it: a port in TIME_WAIT is free to ssh, so it is free here.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return None
            port = sock.getsockname()[1]
        return port or None
    finally:
        for sock in held:
            sock.close()


def free_port(hosts: list[str], avoid: set[int]) -> int:
    """A port free on every host of ``hosts`` (IP addresses), not in ``avoid``.

    The kernel picks one on the first host; the others must take the same. ssh's own
    port 0 would bind each family to a port of its own.
    """
    for _ in range(PORT_TRIES):
        port = _bind_all(hosts, 0)
        if port is not None and port not in avoid:
            return port
    raise ForwardingFailed(f"no port free on all of {', '.join(hosts)} after {PORT_TRIES} tries",
                           hint="give the forward a fixed listen port")


def with_free_ports(profile: Profile, facts: HostFacts) -> Profile:
    """The profile with every ``listen = 0`` replaced by a port free on each address that
    forward binds; other forwards unchanged."""
    if not wants_free_ports(profile):
        return profile
    family = profile.option("AddressFamily") or "any"
    used = {f.listen.port for f in profile.forwards if isinstance(f.listen, TcpAddress)}
    forwards: list[Forward] = []
    for forward in profile.forwards:
        listen = forward.listen
        if isinstance(listen, TcpAddress) and listen.port == 0:
            hosts = [str(f.listen.host) for f in expand_forward(forward, facts, family)
                     if isinstance(f.listen, TcpAddress)]
            port = free_port(hosts or ["127.0.0.1"], used)
            used.add(port)
            forwards.append(replace(forward, listen=TcpAddress(listen.host, port)))
        else:
            forwards.append(forward)
    return replace(profile, forwards=tuple(forwards))
