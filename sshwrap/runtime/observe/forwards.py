"""Whether each expected forward is there: listeners matched to a tunnel's process, and
remote forwards as the client's log confirms or refuses them."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sshwrap.runtime.system import sockets
from sshwrap.runtime.system.listeners import Listener
from sshwrap.runtime.system.state import ExpectedForward

#: Addresses whose listener blocks every address of the port (compared, never bound).
WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104

#: ssh -v: "remote forward success for: listen localhost:40097, connect 127.0.0.1:22"
SSH_REMOTE_OK = re.compile(r"remote forward success for: listen (?P<listen>\S+), connect")
#: ssh: "Error: remote port forwarding failed for listen port 43037" (or "... listen path P")
SSH_REMOTE_REFUSED = re.compile(
    r"remote port forwarding failed for listen (?:port (?P<port>\d+)|path (?P<path>\S+))")
#: plink -v: "Remote port forwarding from localhost:50221 enabled" / "... refused"
PLINK_REMOTE = re.compile(
    r"Remote port forwarding from (?P<listen>\S+) (?P<result>enabled|refused)")


@dataclass(frozen=True)
class ForwardCheck:
    """The health of one expected forward.

    ``holder`` is a foreign process listening on its address; ``blocked`` says that some
    socket we cannot attribute holds it (another user's, or one the scan saw half-made).
    """

    forward: ExpectedForward
    healthy: bool
    detail: str
    holder: sockets.ProcessInfo | None = None
    blocked: bool = False
    refused: bool = False


def _remote_key(listen: str) -> str:
    """What identifies a remote forward in a log line: its socket path, or its port."""
    if listen.startswith("/"):
        return listen
    return listen.rsplit(":", 1)[-1]


def _expected_remote_key(forward: ExpectedForward) -> str:
    return forward.path if forward.path is not None else str(forward.port)


def remote_results(log_text: str) -> tuple[set[str], set[str]]:
    """Remote forwards the client's log confirms, and those the server refused (keys)."""
    confirmed: set[str] = set()
    refused: set[str] = set()
    for match in SSH_REMOTE_OK.finditer(log_text):
        confirmed.add(_remote_key(match["listen"]))
    for match in SSH_REMOTE_REFUSED.finditer(log_text):
        refused.add(match["port"] or match["path"])
    for match in PLINK_REMOTE.finditer(log_text):
        (confirmed if match["result"] == "enabled" else refused).add(_remote_key(match["listen"]))
    return confirmed, refused


@functools.lru_cache(maxsize=4096)
def ip_of(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address an address text names (brackets allowed), or None. Cached: status
    compares every forward with its port's listeners and connections, the same few texts."""
    if text is None:
        return None
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text.strip("[]"))
    return None


def _same_address(forward: ExpectedForward, listener: Listener) -> bool:
    """The listener is the socket this forward asked for (same port, same address)."""
    if forward.path is not None:
        return listener.family == "unix" and listener.address == forward.path
    if listener.family == "unix" or listener.port != forward.port:
        return False
    if listener.address == forward.host:  # the same text: the same address, unparsed
        return True
    wanted = ip_of(forward.host)
    if wanted is None:  # a name or a wildcard: any address of the port will do
        return True
    return ip_of(listener.address) == wanted


def blocks(forward: ExpectedForward, listener: Listener) -> bool:
    """The listener occupies the forward's address: exactly, or by a wildcard bind."""
    if _same_address(forward, listener):
        return True
    if forward.path is not None or listener.port != forward.port:
        return False
    return listener.address in WILDCARDS


def _owned(listener_pid: int | None, tunnel_pid: int) -> bool:
    """The socket belongs to the tunnel: its process, or a process of its group (jump child)."""
    if listener_pid is None:
        return False
    if listener_pid == tunnel_pid:
        return True
    try:
        return os.getpgid(listener_pid) == tunnel_pid
    except OSError:
        return False


def check_forwards(
    forwards: Sequence[ExpectedForward],
    tunnel_pid: int,
    listeners: Sequence[Listener],
    log_text: str | None,
) -> list[ForwardCheck]:
    """Each forward's health from one socket scan and (for remote forwards) the client log.

    ``log_text`` None means remote forwards were verified earlier and the process is alive.
    """
    confirmed, refused = remote_results(log_text) if log_text is not None else (set(), set())
    checks = []
    for forward in forwards:
        if forward.type == "remote":
            key = _expected_remote_key(forward)
            if log_text is None:
                checks.append(ForwardCheck(forward, True, forward.far_side
                                           or "confirmed by the client at start"))
            elif key in refused:
                checks.append(ForwardCheck(forward, False, "refused by the server", refused=True))
            elif key in confirmed:
                checks.append(ForwardCheck(forward, True, "confirmed by the server"))
            else:
                checks.append(ForwardCheck(forward, False, "waiting for the server"))
            continue
        on_address = [ln for ln in listeners if blocks(forward, ln)]
        if any(_owned(ln.pid, tunnel_pid) for ln in on_address if _same_address(forward, ln)):
            checks.append(ForwardCheck(forward, True, "listening"))
            continue
        foreign = [ln for ln in on_address if not _owned(ln.pid, tunnel_pid)]
        known = [ln.pid for ln in foreign if ln.pid is not None]
        if known:
            checks.append(ForwardCheck(forward, False, "taken by another process",
                                       holder=sockets.process_info(known[0])))
        elif foreign:
            # A scan reads process descriptors before the socket tables, so a socket made in
            # between has no pid yet; only once the client has exited is this a squatter.
            checks.append(ForwardCheck(forward, False, "held by an unknown process",
                                       blocked=True))
        else:
            checks.append(ForwardCheck(forward, False, "not listening"))
    return checks
