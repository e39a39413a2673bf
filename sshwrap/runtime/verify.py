"""Ready means verified: every forward listens on every address and belongs to the tunnel."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sshwrap.core.model import Profile
from sshwrap.errors import (
    AuthFailed,
    ConnectionFailed,
    ForwardingFailed,
    NotReady,
    SshwrapError,
)
from sshwrap.runtime import sockets
from sshwrap.runtime.launch import Launched
from sshwrap.runtime.sockets import Listener
from sshwrap.runtime.state import ExpectedForward

POLL_INTERVAL = 0.01
#: The client's sockets are read when it opens or closes one, and at least this often.
SOCKET_CHECK_INTERVAL = 0.1
FULL_SCAN_INTERVAL = 0.25
#: Addresses whose listener blocks every address of the port (compared, never bound).
WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104
LOG_TAIL_LINES = 8

#: ssh -v: "remote forward success for: listen localhost:40097, connect 127.0.0.1:22"
SSH_REMOTE_OK = re.compile(r"remote forward success for: listen (?P<listen>\S+), connect")
#: ssh: "Error: remote port forwarding failed for listen port 43037" (or "... listen path P")
SSH_REMOTE_REFUSED = re.compile(
    r"remote port forwarding failed for listen (?:port (?P<port>\d+)|path (?P<path>\S+))")
#: plink -v: "Remote port forwarding from localhost:50221 enabled" / "... refused"
PLINK_REMOTE = re.compile(
    r"Remote port forwarding from (?P<listen>\S+) (?P<result>enabled|refused)")

ProgressCallback = Callable[[int, int], None]


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


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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
    wanted = _ip(forward.host)
    if wanted is None:  # a name or a wildcard: any address of the port will do
        return True
    return _ip(listener.address) == wanted


def _blocks(forward: ExpectedForward, listener: Listener) -> bool:
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
                checks.append(ForwardCheck(forward, True, "confirmed by the client at start"))
            elif key in refused:
                checks.append(ForwardCheck(forward, False, "refused by the server", refused=True))
            elif key in confirmed:
                checks.append(ForwardCheck(forward, True, "confirmed by the server"))
            else:
                checks.append(ForwardCheck(forward, False, "waiting for the server"))
            continue
        on_address = [ln for ln in listeners if _blocks(forward, ln)]
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


class LogReader:
    """Reads a log file from an offset on, incrementally, with ssh's ``\\r`` stripped."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self.text = ""

    def read(self) -> str:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
            self.offset += len(chunk)
            self.text += chunk.decode("utf-8", "replace").replace("\r", "")
        return self.text


def last_lines(text: str, count: int = LOG_TAIL_LINES) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("debug")]
    return "\n".join(lines[-count:])


def suggest_free_port(families: Sequence[str] = ("127.0.0.1", "::1")) -> int | None:
    """A port free on every loopback address of ``families`` right now."""
    for _attempt in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if all(_bindable(host, port) for host in families):
            return port
    return None


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError:
        return family == socket.AF_INET6 and host == "::1" and not socket.has_ipv6
    return True


def port_taken_error(name: str, check: ForwardCheck) -> ForwardingFailed:
    holder = check.holder
    who = "a process of another user"
    if holder is not None and holder.pid:
        command = " ".join(holder.cmdline) or holder.name or "?"
        who = f"pid {holder.pid} ({holder.name or '?'}: {command})"
    free = suggest_free_port()
    hint = "stop that process or choose another listen port"
    if free is not None:
        hint += f", e.g. listen = {free}"
    fwd = check.forward
    return ForwardingFailed(
        f"{name}: {fwd.type} forward cannot listen on {fwd.listen}: it is held by {who}",
        hint=hint)


def refused_error(name: str, check: ForwardCheck) -> ForwardingFailed:
    fwd = check.forward
    return ForwardingFailed(
        f"{name}: the server refused remote forward {fwd.listen} -> {fwd.to}",
        hint="the port is busy on the server, or the server forbids forwarding "
             "(AllowTcpForwarding / PermitListen); choose another port or ask its admin")


def _fallback_error(name: str, log_text: str) -> SshwrapError:
    """A plain classification used only when no detailed diagnosis is available."""
    tail = last_lines(log_text) or "(the client wrote nothing)"
    message = f"{name}: the client exited before the tunnel was ready; its last messages:\n{tail}"
    checks: list[tuple[tuple[str, ...], type[SshwrapError]]] = [
        (("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
          "Permission denied", "Cannot confirm a host key", "host key is not cached",
          "Access denied", "No supported authentication"), AuthFailed),
        (("Address already in use", "Could not request local forwarding",
          "forwarding failed", "cannot listen"), ForwardingFailed),
    ]
    for needles, kind in checks:
        if any(n in log_text for n in needles):
            return kind(message)
    return ConnectionFailed(message, hint="run 'sshwrap check' on the profile for details")


def failure_from_log(name: str, log_text: str, profile: Profile) -> SshwrapError:
    """The error for a client that exited, from its own log."""
    try:
        from sshwrap.runtime.diagnose import diagnose_log
    except ImportError:
        return _fallback_error(name, log_text)
    diagnosis = diagnose_log(log_text, profile)
    return diagnosis.error() if diagnosis is not None else _fallback_error(name, log_text)


def socket_fds(pid: int) -> frozenset[str] | None:
    """The socket inodes ``pid`` holds open, from its /proc fd links (cheap, unlike reading
    the sockets themselves); None where that cannot be read."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    found = set()
    for fd in names:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return frozenset(found)


class _ClientSockets:
    """A starting client's listening sockets, read again only when they may have changed.

    Reading them parses the system's TCP tables, so it is done when the client opened or
    closed a socket (its /proc fd links tell, next to for free), and now and then
    regardless. The scan of every process, which finds a squatter (plink keeps running
    without its listener), runs now and then and once the client has exited.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.listeners: list[Listener] = []
        self._seen: frozenset[str] | None = None
        self._last_read = -SOCKET_CHECK_INTERVAL
        self._full_scan_due = time.monotonic() + FULL_SCAN_INTERVAL

    def refresh(self, exited: bool) -> bool:
        """Read the sockets again if they may have changed; True when they were read."""
        now = time.monotonic()
        own = socket_fds(self.pid)
        if not (exited or own is None or own != self._seen
                or now >= self._last_read + SOCKET_CHECK_INTERVAL):
            return False
        self._seen, self._last_read = own, now
        if exited or now >= self._full_scan_due:
            self.listeners = sockets.listening_sockets()
            self._full_scan_due = now + FULL_SCAN_INTERVAL
        else:
            self.listeners = sockets.listening_sockets(pid=self.pid)
        return True


def wait_ready(
    launched: Launched,
    profile: Profile,
    forwards: Sequence[ExpectedForward],
    *,
    wait: float,
    progress: ProgressCallback | None = None,
) -> list[ForwardCheck]:
    """Poll until every forward is verified (one socket scan per check); raise the right error.

    The caller stops the process when this raises.
    """
    deadline = time.monotonic() + wait
    reader = LogReader(launched.log_path, launched.log_offset)
    name = profile.name
    watch = _ClientSockets(launched.pid)
    seen_log = -1
    while True:
        exited = launched.popen.poll() is not None
        log_text = reader.read()
        # A grown log (remote forwards are confirmed there) is checked against the sockets
        # already read; the sockets are read again only when they may have changed.
        if not watch.refresh(exited) and len(log_text) == seen_log:
            time.sleep(POLL_INTERVAL)
            continue
        seen_log = len(log_text)
        checks = check_forwards(forwards, launched.pid, watch.listeners, log_text)
        if all(c.healthy for c in checks) and not exited:
            checks = check_forwards(forwards, launched.pid, sockets.listening_sockets(),
                                    log_text)
        healthy = sum(c.healthy for c in checks)
        if progress is not None:
            progress(healthy, len(checks))
        if healthy == len(checks) and not exited:
            return checks
        for check in checks:
            if check.holder is not None:
                raise port_taken_error(name, check)
            if check.refused:
                raise refused_error(name, check)
        if exited:
            for check in checks:
                if check.blocked:
                    raise port_taken_error(name, check)
            raise failure_from_log(name, reader.read(), profile)
        if time.monotonic() >= deadline:
            missing = "; ".join(f"{c.forward.type} {c.forward.listen}: {c.detail}"
                                for c in checks if not c.healthy)
            tail = last_lines(log_text)
            raise NotReady(
                f"{name}: not ready after {wait:g} s ({missing})"
                + (f"; last messages:\n{tail}" if tail else ""),
                hint="raise --wait, or run 'sshwrap check' on the profile")
        time.sleep(POLL_INTERVAL)
