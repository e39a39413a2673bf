"""Which concrete addresses each forward listens on: loopback made explicit per address family."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sshwrap.core.model import Forward, ForwardType, Profile, TcpAddress, UnixAddress


@dataclass(frozen=True)
class HostFacts:
    """What the compiler must know about the machine the tunnel will run on."""

    ipv6_loopback: bool = True


def _explicit_loopback(listen: TcpAddress, facts: HostFacts,
                       family: str) -> tuple[TcpAddress, ...]:
    # OpenSSH counts a forward as bound if *any* address family binds, so "localhost:3307"
    # with a squatter on 127.0.0.1:3307 silently binds only [::1]. Naming each family makes
    # ExitOnForwardFailure fail on a squatter on either. AddressFamily limits ssh to one
    # family, and a bind in the other would then fail.
    binds = []
    if family != "inet6":
        binds.append(TcpAddress("127.0.0.1", listen.port))
    if (facts.ipv6_loopback and family != "inet") or family == "inet6":
        binds.append(TcpAddress("::1", listen.port))
    return tuple(binds)


def expand_forward(forward: Forward, facts: HostFacts,
                   family: str = "any") -> tuple[Forward, ...]:
    """The forward as one or more forwards with explicit listen addresses; ``family`` is the
    profile's AddressFamily option (any, inet or inet6)."""
    listen = forward.listen
    if isinstance(listen, UnixAddress):
        return (forward,)
    if forward.type is ForwardType.REMOTE:
        # The server binds a remote forward; "localhost" asks it for loopback in every family
        # (sshd honours an address only with GatewayPorts clientspecified, and loopback otherwise).
        if listen.host is None:
            return (replace(forward, listen=TcpAddress("localhost", listen.port)),)
        return (forward,)
    if listen.host in (None, "localhost", "ip6-localhost"):
        return tuple(replace(forward, listen=addr)
                     for addr in _explicit_loopback(listen, facts, family))
    return (forward,)


def expanded_forwards(profile: Profile, facts: HostFacts) -> tuple[Forward, ...]:
    family = profile.option("AddressFamily") or "any"
    return tuple(f for fwd in profile.forwards for f in expand_forward(fwd, facts, family))
