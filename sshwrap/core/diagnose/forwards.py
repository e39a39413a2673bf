"""Forward failures in a log: a port taken here, a remote forward refused, a channel refused."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sshwrap.core.diagnose.patterns as p
from sshwrap.core.binds import HostFacts, expand_forward
from sshwrap.core.diagnose.model import (
    Context,
    Diagnosis,
    FailureKind,
    Segment,
    strip_brackets,
)
from sshwrap.core.model import Forward, ForwardType, Profile, TcpAddress
from sshwrap.core.syntax import is_loopback_host

#: What sshd refuses a direct-tcpip channel (-L, -D) for, and a tcpip-forward (-R) for.
LOCAL_POLICY = "AllowTcpForwarding (no or remote), PermitOpen or DisableForwarding"
REMOTE_POLICY = "AllowTcpForwarding (no or local) or DisableForwarding"
LISTEN_POLICY = "PermitListen"
KEY_POLICY = "or the key's no-port-forwarding / permitopen / permitlisten options"

#: sshd's debug message to the client when it forbids a remote forward (ssh shows it as
#: "debug1: Remote: ...", plink as "Remote debug message: ...").
_SERVER_DISABLED = "Server has disabled port forwarding"
_LISTEN_REFUSED = "port forwarding refused"
_CHANNEL_NEW = re.compile(r"^debug\d: channel (?P<channel>\d+): new (?:direct|dynamic)-tcpip")
_CHANNEL_FREE = re.compile(r"^debug\d: channel (?P<channel>\d+): free: direct-tcpip: listening "
                           r"port (?P<listen>\d+) for (?P<host>\S+) port (?P<port>\d+),")
_PLINK_OPEN_FROM = re.compile(r"^Opening connection to (?P<target>\S+) for forwarding from")


def _hostport(host: str, port: str | int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def find_forward(profile: Profile, *, listen_port: int | None = None,
                 kind: ForwardType | None = None) -> Forward | None:
    """The profile's forward that listens on ``listen_port`` (of type ``kind``, if given)."""
    for forward in profile.forwards:
        if kind is not None and forward.type is not kind:
            continue
        if isinstance(forward.listen, TcpAddress) and forward.listen.port == listen_port:
            return forward
    return None


@dataclass(frozen=True)
class ChannelFailure:
    """A channel the tunnel host did not open: for which forward, to which target, and why."""

    index: int  # the line's position in the log
    line: str
    reason: str
    listen_port: int | None  # the local port the connection came in on (ssh says it)
    target: str | None  # host:port the tunnel host was asked to connect to

    @property
    def prohibited(self) -> bool:
        """Refused by the server's policy, not because the target did not answer."""
        return "administratively prohibited" in self.reason.lower()


def _ssh_channel(lines: list[str], index: int, channel: str) -> tuple[int | None, str | None]:
    # A dynamic forward's target shows only when the channel is freed (after the failure).
    for line in lines[index + 1:]:
        free = _CHANNEL_FREE.match(line)
        if free and free["channel"] == channel:
            return int(free["listen"]), _hostport(free["host"], free["port"])
    for back in range(index - 1, 0, -1):
        new = _CHANNEL_NEW.match(lines[back])
        if new and new["channel"] == channel:
            request = p.FORWARD_REQUEST.match(lines[back - 1])
            if request:
                target = None if request["host"] == "socks" else \
                    _hostport(request["host"], request["port"])
                return int(request["listen"]), target
            break
    return None, None


def channel_failures(lines: list[str]) -> list[ChannelFailure]:
    """Every ``open failed`` (plink: ``Forwarded connection refused``) with its forward."""
    found = []
    proofs = p.proof_failures(lines)
    for i, line in enumerate(lines):
        match = p.OPEN_FAILED.match(line)
        if match and i in proofs:  # a far-side proof's refusal: its own verdict
            continue
        if match:
            listen_port, target = _ssh_channel(lines, i, match["channel"])
            found.append(ChannelFailure(i, line, match["reason"], listen_port, target))
            continue
        plink = p.PLINK_OPEN_FAILED.match(line)
        if plink:
            target = None
            for back in reversed(lines[:i]):
                request = _PLINK_OPEN_FROM.match(back)
                if request:
                    target = request["target"]
                    break
            found.append(ChannelFailure(i, line, plink["reason"], None, target))
    return found


def describe_channel(profile: Profile, failure: ChannelFailure) -> str:
    """``local 3307 -> db:3306`` when the log says which forward, else the target asked for."""
    forward = find_forward(profile, listen_port=failure.listen_port)
    if forward is None and failure.target is not None:
        forward = next((f for f in profile.forwards
                        if f.to is not None and f.to.render() == failure.target), None)
    if forward is None:
        return f"the forward to {failure.target}" if failure.target else "a forward"
    if forward.type is ForwardType.DYNAMIC and failure.target:
        return f"{forward.describe()} (to {failure.target})"
    return forward.describe()


def channel_diagnosis(profile: Profile, hop_label: str, failure: ChannelFailure) -> Diagnosis:
    """A refused channel as a server-policy or a server-side failure, naming the forward."""
    what = describe_channel(profile, failure)
    details = {"reason": failure.reason, "forward": what}
    if failure.target:
        details["target"] = failure.target
    if failure.prohibited:
        return Diagnosis(
            FailureKind.FORWARDING_DISABLED, Segment.SERVER_POLICY, hop_label,
            f"the {hop_label} forbids {what}: its sshd does not allow this forwarding "
            f"({failure.reason})",
            f"the tunnel host's sshd_config sets {LOCAL_POLICY} ({KEY_POLICY}); ask "
            f"the administrator of {profile.host} to allow it",
            details, profile.name)
    towards = failure.target or "the forward's target"
    return Diagnosis(
        FailureKind.TARGET_UNREACHABLE, Segment.SERVER, hop_label,
        f"the {hop_label} cannot reach {towards} for {what} ({failure.reason})",
        f"the tunnel works, but the service behind it does not answer: check that it runs and "
        f"that {towards} is right as seen from {profile.host}",
        details, profile.name)


def rule_port_taken(ctx: Context) -> Diagnosis | None:
    for line in ctx.lines:
        match = p.SSH_BIND.match(line) or p.PLINK_BIND.match(line)
        if match and "in use" in match["reason"].lower():
            address, port = strip_brackets(match["address"]), match["port"]
            shown = _hostport(address, port)
            forward = find_forward(ctx.profile, listen_port=int(port))
            which = f" for {forward.describe()}" if forward else ""
            return Diagnosis(
                FailureKind.PORT_TAKEN, Segment.CLIENT, None,
                f"port {port} is already in use on this machine ({shown}){which}",
                f"find who holds it with 'sshwrap ports {port}', then stop that process or "
                "choose another listen port",
                {"port": port, "address": address}, ctx.profile.name)
        unix = p.SSH_UNIX_BIND.match(line)
        if unix:
            return Diagnosis(
                FailureKind.PORT_TAKEN, Segment.CLIENT, None,
                f"the socket {unix['path']} cannot be created: {unix['reason']}",
                "remove a stale socket file or choose another path",
                {"path": unix["path"]}, ctx.profile.name)
    return None


def _server_says(lines: list[str], index: int) -> str | None:
    """What sshd told the client about the remote forward refused at ``index``.

    sshd's message comes just before its refusal; the search stops at the previous forward's
    answer, or at plink's request of this forward.
    """
    own_spec = True  # ssh's "remote forward failure for: ..." of this very refusal
    for line in reversed(lines[:index]):
        if line.startswith(("debug1: Remote: ", "Remote debug message: ")):
            for message in (_SERVER_DISABLED, _LISTEN_REFUSED):
                if message in line:
                    return message
            continue
        if p.SSH_REMOTE_FAIL_SPEC.search(line) and own_spec:
            own_spec = False
            continue
        if p.SSH_REMOTE_FAIL_SPEC.search(line) or p.SSH_REMOTE_FAIL.search(line) \
                or "remote forward success" in line or line.startswith(
                    ("Requesting remote port", "Authenticated to ", "Access granted")):
            return None
    return None


def _remote_forward(profile: Profile, listen: str) -> Forward | None:
    port = listen.rsplit(":", 1)[-1]
    return find_forward(profile, listen_port=int(port), kind=ForwardType.REMOTE) \
        if port.isdigit() else None


def rule_remote_refused(ctx: Context) -> Diagnosis | None:
    spec = None
    for i, line in enumerate(ctx.lines):
        detail = p.SSH_REMOTE_FAIL_SPEC.search(line)
        if detail:
            spec = detail["listen"]
        match = p.SSH_REMOTE_FAIL.search(line) or p.PLINK_REMOTE_FAIL.match(line)
        if not match:
            continue
        groups = match.groupdict()
        listen = groups.get("listen") or spec or groups.get("path") or groups.get("port") or "?"
        hop = ctx.hops[-1]
        forward = _remote_forward(ctx.profile, listen)
        what = forward.describe() if forward else f"the remote forward on {listen}"
        if forward is not None:  # as ssh asks for it, whichever way the log gave it
            listen = expand_forward(forward, HostFacts())[0].listen.render()
        details = {"listen": listen, "forward": what}
        said = _server_says(ctx.lines, i)
        if said is None:
            return Diagnosis(
                FailureKind.REMOTE_PORT_BUSY, Segment.GATEWAY, hop.label,
                f"the {hop.label} could not listen on {listen} for {what}: the port is busy "
                "there (its sshd allows the forward)",
                f"something on {ctx.profile.host} already listens on {listen} (often an old "
                "session's forward that has not timed out yet): choose another port, or stop "
                "what holds it",
                details, ctx.profile.name)
        settings = LISTEN_POLICY if said == _LISTEN_REFUSED else REMOTE_POLICY
        gateway = ""
        if forward is not None and isinstance(forward.listen, TcpAddress) \
                and not is_loopback_host(forward.listen.host):
            gateway = f"; GatewayPorts decides whether it may listen on {forward.listen.host}"
        details["server_said"] = said
        return Diagnosis(
            FailureKind.REMOTE_FORWARD_FORBIDDEN, Segment.SERVER_POLICY, hop.label,
            f"the {hop.label} forbids {what}: its sshd says \"{said}\"",
            f"the sshd_config of {ctx.profile.host} sets {settings} ({KEY_POLICY}){gateway}; "
            "ask its administrator to allow this listen port",
            details, ctx.profile.name)
    return None


def rule_open_failed(ctx: Context) -> Diagnosis | None:
    failures = channel_failures(ctx.lines)
    if not failures:
        return None
    return channel_diagnosis(ctx.profile, ctx.hops[-1].label, failures[0])


_SSH_CONNECTING_ADDR = re.compile(
    r"^debug\d: Connecting to \S+ \[(?P<addr>[^\]]+)\] port (?P<port>\d+)\.$")
_SSH_ESTABLISHED = "debug1: Connection established."
_PLINK_CONNECTED = re.compile(r"^Connected to (?P<addr>\S+)$")


def reached_address(lines: list[str]) -> tuple[str, int] | None:
    """The address and port the client's TCP connection reached, as its log tells: the
    tunnel host itself can connect there (None when the log does not say, e.g. behind a jump)."""
    attempt: tuple[str, int] | None = None
    for line in lines:
        match = _SSH_CONNECTING_ADDR.match(line) or p.PLINK_CONNECTING.match(line)
        if match:
            host = match.groupdict().get("addr") or match["host"]
            attempt = (host, int(match["port"]))
            continue
        if attempt is not None and (line == _SSH_ESTABLISHED or _PLINK_CONNECTED.match(line)):
            return attempt
    return None
