"""Before any output is built: every value of the profile passes again the very checker
``core.parse`` ran on it, so a compiler refuses nothing ``validate`` accepted."""

from __future__ import annotations

from collections.abc import Callable

from sshwrap.core import syntax
from sshwrap.core.compile import NotExpressible
from sshwrap.core.model import Address, Profile, TcpAddress
from sshwrap.core.options import check_option


def _address(address: Address | None, listen: bool) -> None:
    if address is None:
        return
    if isinstance(address, TcpAddress):
        (syntax.check_listen_port if listen else syntax.check_port)(address.port)
        if address.host is not None:
            (syntax.check_bind_host if listen else syntax.check_host)(address.host)
    else:
        syntax.check_path(address.path, "socket path")


def _check(profile: Profile) -> list[tuple[str, str]]:
    """(key, problem) for each value its checker in ``core.syntax`` or ``core.options``
    refuses (a profile built by hand, or changed after parsing)."""
    problems: list[tuple[str, str]] = []

    def guard(key: str, check: Callable[..., object], *args: object) -> None:
        try:
            check(*args)
        except syntax.SyntaxProblem as exc:
            problems.append((key, str(exc)))

    guard("name", syntax.check_profile_name, profile.name)
    guard("host", syntax.check_host, profile.host)
    if profile.user is not None:
        guard("user", syntax.check_user, profile.user)
    if profile.port is not None:
        guard("port", syntax.check_port, profile.port)
    for key in ("identity_file", "ssh_config_file"):
        if getattr(profile, key) is not None:
            guard(key, syntax.check_path, getattr(profile, key), key)
    for i, hop in enumerate(profile.jump):
        guard(f"jump[{i}]", syntax.parse_hop, hop.render())
    for i, forward in enumerate(profile.forwards):
        guard(f"forward[{i}].listen", _address, forward.listen, True)
        guard(f"forward[{i}].to", _address, forward.to, False)
    for name, value in profile.options:
        guard(f"options.{name}", check_option, name, value)
    guard("description", syntax.check_description, profile.description)
    return problems


def require_parsed(profile: Profile, target: str) -> None:
    """Refuse a profile whose values were not made by ``core.parse`` (built by hand, or
    changed after parsing): no compiler output is built from an unchecked value."""
    problems = _check(profile)
    if problems:
        key, message = problems[0]
        raise NotExpressible(target, key, message)


def refuse_free_ports(profile: Profile, target: str) -> None:
    """NotExpressible for a ``listen = 0`` forward in output that runs without sshwrap.

    sshwrap chooses the port when it starts the tunnel and reports it; ssh's own port 0 is
    refused for local forwards, binds each loopback family to a different port for dynamic
    ones, and a Host block or command line has no way to tell which port it got.
    """
    for i, forward in enumerate(profile.forwards):
        if isinstance(forward.listen, TcpAddress) and forward.listen.port == 0:
            raise NotExpressible(
                target, f"forward[{i}].listen",
                "listen = 0 (a free port chosen at start) needs sshwrap to run the tunnel; "
                "give a fixed port")
