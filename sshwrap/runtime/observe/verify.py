"""Ready means verified: every forward listens on every address and belongs to the tunnel."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sshwrap.core.model import Profile
from sshwrap.errors import (
    AuthFailed,
    ConnectionFailed,
    ForwardingFailed,
    NotReady,
    SshwrapError,
)
from sshwrap.runtime.client.launch import Launched
from sshwrap.runtime.observe.forwards import (
    ForwardCheck,
    blocks,
    check_forwards,
    remote_results,
)
from sshwrap.runtime.observe.readywatch import ReadyWatch
from sshwrap.runtime.system import listeners
from sshwrap.runtime.system.listeners import Listener, TcpListener, attributed, by_port
from sshwrap.runtime.system.state import ExpectedForward

#: Taken from here by check and the tests, as before the checks had a module of their own.
__all__ = ["ForwardCheck", "ListenerView", "LogReader", "ReadyWatch", "attributed",
           "check_forwards", "remote_results", "wait_ready"]

#: How often a starting tunnel is polled, at least (ReadyWatch paces many at once).
POLL_INTERVAL = 0.005
#: Without sock_diag, the client's sockets are read when it opens or closes one, and at
#: least this often.
SOCKET_CHECK_INTERVAL = 0.1
FULL_SCAN_INTERVAL = 0.25
LOG_TAIL_LINES = 8

ProgressCallback = Callable[[int, int], None]


class LogReader:
    """Reads a log file from an offset on, incrementally, with ssh's ``\\r`` stripped."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self.text = ""

    def read(self) -> str:
        from sshwrap.runtime.system.logs import read_since

        chunk = read_since(self.path, self.offset)  # logical: right across the engine's cuts
        self.offset = max(self.offset, chunk.next)
        self.text += chunk.data.decode("utf-8", "replace").replace("\r", "")
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


def refused_error(name: str, check: ForwardCheck, log_text: str = "",
                  profile: Profile | None = None) -> SshwrapError:
    """A refused remote forward: busy or forbidden as the client's log tells (sshd says which),
    or both named when there is no log to read (a shared connection's ``-O forward``)."""
    if profile is not None and log_text:
        from sshwrap.core.diagnose import FailureKind, diagnose_log

        diagnosis = diagnose_log(log_text, profile)
        if diagnosis is not None and diagnosis.kind in (FailureKind.REMOTE_PORT_BUSY,
                                                        FailureKind.REMOTE_FORWARD_FORBIDDEN):
            return diagnosis.error()
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
    from sshwrap.core.diagnose import diagnose_log

    diagnosis = diagnose_log(log_text, profile)
    return diagnosis.error() if diagnosis is not None else _fallback_error(name, log_text)


class _ClientSockets:
    """A starting client's listening sockets (runtime/system/listeners.py), read again on every poll
    when that is cheap.

    With sock_diag (runtime/system/sockdiag.py) a read costs a tenth of a millisecond: every TCP
    listener, marked as the client's when the client holds its inode. A listener on an
    expected address that is not the client's (a squatter, or a jump child's) is attributed
    by a scan of every process. Without sock_diag, or with unix-socket forwards, psutil
    parses the system's tables: only when the client opened or closed a socket (its /proc
    fd links tell) and now and then regardless, with a scan of every process, which finds a
    squatter, now and then and once the client has exited.
    """

    def __init__(self, pid: int, forwards: Sequence[ExpectedForward],
                 ready: ReadyWatch) -> None:
        self.pid = pid
        self.ready = ready
        self.listening = [f for f in forwards if f.type != "remote"]
        #: The listeners hold every socket on the expected addresses, attributed: no scan
        #: of every process would tell more.
        self.complete = False
        self.listeners: list[Listener] = []
        self._quick = all(f.path is None for f in self.listening)
        self._ports = {f.port for f in self.listening}
        self._seen: frozenset[int] | None = None
        self._last_read = -SOCKET_CHECK_INTERVAL
        # Quick reads attribute a foreign listener at once; the slow path scans later.
        self._full_scan_due = time.monotonic() + (0.0 if self._quick else FULL_SCAN_INTERVAL)

    def refresh(self, exited: bool) -> bool:
        """Read the sockets again if they may have changed; True when they were read."""
        now = time.monotonic()
        if self._quick and not exited:
            quick = self._quick_read()
            if quick is not None:
                self.listeners, self.complete = quick, True
                foreign = any(ln.pid is None and blocks(f, ln)
                              for f in self.listening for ln in quick)
                if foreign and now >= self._full_scan_due:
                    self.listeners = listeners.listening_sockets()
                    self._full_scan_due = now + FULL_SCAN_INTERVAL
                return True
        self.complete = False
        own = listeners.socket_inodes(self.pid)
        if not (exited or own is None or own != self._seen
                or now >= self._last_read + SOCKET_CHECK_INTERVAL):
            return False
        self._seen, self._last_read = own, now
        if exited or now >= self._full_scan_due:
            self.listeners = listeners.listening_sockets()
            self._full_scan_due = now + FULL_SCAN_INTERVAL
        else:
            self.listeners = listeners.listening_sockets(pid=self.pid)
        return True

    def _quick_read(self) -> list[Listener] | None:
        # Listeners first: a socket the client makes in between is then missed for one poll,
        # never taken for another process's. Only sock_diag is quick enough to read per poll,
        # and one read serves every tunnel being verified. Only a listener on one of our ports
        # can be ours or in our way: the client's descriptors are read once there is one.
        found = self.ready.recent_tcp_listeners(POLL_INTERVAL)
        if found is None:
            return None
        relevant = [ln for ln in found if ln.port in self._ports]
        return attributed(relevant, self.pid) if relevant else []


class ListenerView:
    """The host's listening sockets (runtime/system/listeners.py) for a command that checks running
    tunnels: status, check, up of a running tunnel, down.

    One quick read serves every tunnel, each tunnel's own sockets found from its /proc fd
    links: checking a hundred tunnels costs little more than one. A scan of every process
    (made once, and shared too) settles what that cannot: unix-socket forwards, a forward not
    found healthy (to name who holds its address), or no quick read here. ``ready`` remembers
    who holds which listener (the engine's, across its commands); without one, a view
    remembers for itself.
    """

    def __init__(self, ready: ReadyWatch | None = None) -> None:
        self.ready = ready if ready is not None else ReadyWatch()
        self._by_port: dict[int, list[TcpListener]] | None = None
        self._diag_read = False
        self._full: list[Listener] | None = None

    def full(self) -> list[Listener]:
        if self._full is None:
            self._full = listeners.listening_sockets()
        return self._full

    def check(self, forwards: Sequence[ExpectedForward], pid: int,
              log_text: str | None = None) -> list[ForwardCheck]:
        """check_forwards of one tunnel, from the quick read when that finds it healthy."""
        listening = [f for f in forwards if f.type != "remote"]
        if all(f.path is None for f in listening):
            if not self._diag_read:
                self._by_port, self._diag_read = by_port(listeners.tcp_listeners()), True
            if self._by_port is None:
                return check_forwards(forwards, pid, self.full(), log_text)
            found = [ln for port in {f.port for f in listening}
                     for ln in self._by_port.get(port or 0, ())]
            if not found:  # nothing on their ports: what a scan of every process would say
                return check_forwards(forwards, pid, [], log_text)
            if len(listening) == len(forwards) and self.ready.held_before(found, pid) and all(
                    any(ln.port == f.port and ln.address == f.host for ln in found)
                    for f in listening):
                # Every socket on these ports is the tunnel's, as found before, on the very
                # address each forward asked for: what check_forwards would say, for less.
                return [ForwardCheck(f, True, "listening") for f in forwards]
            quick = self.ready.attributed(found, pid)
            if quick is not None:
                checks = check_forwards(forwards, pid, quick, log_text)
                if all(c.healthy for c in checks):
                    return checks
        return check_forwards(forwards, pid, self.full(), log_text)


def wait_ready(
    launched: Launched,
    profile: Profile,
    forwards: Sequence[ExpectedForward],
    *,
    wait: float,
    progress: ProgressCallback | None = None,
    paused: Callable[[], float] | None = None,
    ready: ReadyWatch | None = None,
) -> list[ForwardCheck]:
    """Poll until every forward is verified (one socket scan per check); raise the right error.

    ``paused`` tells how long the start has waited for a person (a one-time code): that
    time is not counted against ``wait``. ``ready`` is shared by the tunnels verified at
    once (the engine's). The caller stops the process when this raises.
    """
    deadline = time.monotonic() + wait
    reader = LogReader(launched.log_path, launched.log_offset)
    name = profile.name
    ready = ready if ready is not None else ReadyWatch()
    watch = _ClientSockets(launched.pid, forwards, ready)
    seen_log = -1
    with ready.waiting():
        while True:
            exited = launched.popen.poll() is not None
            log_text = reader.read()
            # A grown log (remote forwards are confirmed there) is checked against the sockets
            # already read; the sockets are read again only when they may have changed.
            if not watch.refresh(exited) and len(log_text) == seen_log:
                time.sleep(ready.interval(POLL_INTERVAL))
                continue
            seen_log = len(log_text)
            checks = check_forwards(forwards, launched.pid, watch.listeners, log_text)
            if all(c.healthy for c in checks) and not exited and not watch.complete:
                checks = check_forwards(forwards, launched.pid, listeners.listening_sockets(),
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
                    raise refused_error(name, check, log_text, profile)
            if exited:
                for check in checks:
                    if check.blocked:
                        raise port_taken_error(name, check)
                raise failure_from_log(name, reader.read(), profile)
            if time.monotonic() >= deadline + (paused() if paused is not None else 0.0):
                raise not_ready_error(name, wait, checks, log_text)
            time.sleep(ready.interval(POLL_INTERVAL))


def not_ready_error(name: str, wait: float, checks: Sequence[ForwardCheck],
                    log_text: str) -> NotReady:
    """The deadline passed: what is still missing, and the client's last words. The same
    words whichever way the tunnel runs (alone, in the engine, on a shared connection)."""
    missing = "; ".join(f"{c.forward.type} {c.forward.listen}: {c.detail}"
                        for c in checks if not c.healthy)
    tail = last_lines(log_text)
    return NotReady(f"{name}: not ready after {wait:g} s ({missing})"
                    + (f"; last messages:\n{tail}" if tail else ""),
                    hint="raise --wait, or run 'sshwrap check' on the profile")
