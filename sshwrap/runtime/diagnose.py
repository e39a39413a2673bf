"""Read an ssh (-v -E) or plink (-v) log and say which segment and hop failed, and why."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sshwrap.core.model import Profile
from sshwrap.errors import AuthFailed, ConnectionFailed, ForwardingFailed, SshwrapError


class FailureKind(StrEnum):
    PORT_TAKEN = "port_taken"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    NAME_NOT_RESOLVED = "name_not_resolved"
    CONNECTION_REFUSED = "connection_refused"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"
    REMOTE_FORWARD_REFUSED = "remote_forward_refused"
    FORWARDING_DISABLED = "forwarding_disabled"
    TARGET_UNREACHABLE = "target_unreachable"
    JUMP_CANNOT_REACH_NEXT_HOP = "jump_cannot_reach_next_hop"
    CLOSED_BY_REMOTE = "closed_by_remote"
    UNKNOWN = "unknown"


class Segment(StrEnum):
    """Where along the path it failed."""

    CLIENT = "client"  # ingress on this machine
    GATEWAY = "gateway"  # a jump host or the tunnel host
    SERVER = "server"  # the target behind the tunnel host


_ERROR_CLASS: dict[FailureKind, type[SshwrapError]] = {
    FailureKind.AUTH_FAILED: AuthFailed,
    FailureKind.HOST_KEY_UNKNOWN: AuthFailed,
    FailureKind.HOST_KEY_CHANGED: AuthFailed,
    FailureKind.PORT_TAKEN: ForwardingFailed,
    FailureKind.REMOTE_FORWARD_REFUSED: ForwardingFailed,
    FailureKind.FORWARDING_DISABLED: ForwardingFailed,
    FailureKind.TARGET_UNREACHABLE: ForwardingFailed,
}


@dataclass(frozen=True)
class Diagnosis:
    """One failure: what happened, where (segment and hop), and what to do about it."""

    kind: FailureKind
    segment: Segment
    hop: str | None
    message: str
    hint: str
    details: Mapping[str, str] = field(default_factory=dict)
    profile: str = ""

    def error(self) -> SshwrapError:
        """The error the CLI reports: exit 4 (auth, host key), 5 (forwarding), else 6."""
        cls = _ERROR_CLASS.get(self.kind, ConnectionFailed)
        prefix = f"{self.profile}: " if self.profile else ""
        return cls(prefix + self.message, hint=self.hint)


# --- the hops of a profile --------------------------------------------------------------


@dataclass(frozen=True)
class _Hop:
    label: str  # "jump host 1 (bastion:2222)" or "tunnel host (db.example)"
    host: str
    port: int


def _hops(profile: Profile) -> list[_Hop]:
    hops = [_Hop(f"jump host {i} ({hop.render()})", hop.host, hop.port or 22)
            for i, hop in enumerate(profile.jump, start=1)]
    port = profile.port or 22
    shown = profile.host if profile.port is None else f"{profile.host}:{port}"
    hops.append(_Hop(f"tunnel host ({shown})", profile.host, port))
    return hops


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _split_host_port(text: str) -> tuple[str, int | None]:
    """``[h]:p``, ``h:p`` or ``h`` (ssh's known_hosts and log spellings)."""
    match = re.fullmatch(r"\[(?P<host>[^\]]+)\]:(?P<port>\d+)", text)
    if match:
        return match["host"], int(match["port"])
    if text.count(":") == 1:
        host, port = text.split(":")
        if port.isdigit():
            return host, int(port)
    return text, None


class _Context:
    """Which hop the log is talking about at each line, from the connection messages."""

    def __init__(self, profile: Profile, lines: list[str]) -> None:
        self.profile = profile
        self.hops = _hops(profile)
        self.lines = lines

    def find(self, host: str | None, port: int | None) -> _Hop | None:
        if host is None:
            return None
        host = _strip_brackets(host)
        matches = [h for h in self.hops if h.host == host]
        if port is not None:
            exact = [h for h in matches if h.port == port]
            if exact:
                return exact[0]
        return matches[0] if len(matches) == 1 or (matches and port is None) else None

    def current(self, index: int) -> _Hop:
        """The hop whose connection is the last one opened before line ``index``."""
        for line in reversed(self.lines[:index]):
            match = _CONNECTING.search(line)
            if match:
                found = self.find(match["host"], int(match["port"]))
                if found is not None:
                    return found
                return self.hops[0]
            match = _PLINK_CONNECTING.search(line)
            if match:
                found = self.find(match["host"], int(match["port"]))
                return found if found is not None else self.hops[0]
        # Nothing connected yet: the first hop is the one this machine talks to.
        return self.hops[0]

    def hop_for(self, index: int, host: str | None = None, port: int | None = None) -> _Hop:
        return self.find(host, port) or self.current(index)

    def next_after(self, hop: _Hop) -> _Hop | None:
        position = self.hops.index(hop)
        return self.hops[position + 1] if position + 1 < len(self.hops) else None


# --- what ssh and plink say ---------------------------------------------------------------

_CONNECTING = re.compile(r"^debug\d: Connecting to (?P<host>\S+) \[[^\]]*\] port (?P<port>\d+)\.")
_PLINK_CONNECTING = re.compile(r"^Connecting to (?P<host>\S+) port (?P<port>\d+)$")
_AUTHENTICATED = re.compile(r"^Authenticated to (?P<host>\S+) \(\[[^\]]*\]:(?P<port>\d+)\)")
_SERVER_KEY = re.compile(r"^debug\d: Server host key: \S+ (?P<fp>SHA256:\S+)")
_PLINK_KEY = re.compile(r"^(?:ssh-\S+|ecdsa-\S+|rsa\S*) \d+ (?P<fp>SHA256:\S+)$")
_SSH_CONNECT_FAIL = re.compile(
    r"^ssh: connect to host (?P<host>\S+) port (?P<port>\d+): (?P<reason>.+)$")
_SSH_RESOLVE = re.compile(r"^ssh: Could not resolve hostname (?P<host>\S+): (?P<reason>.+)$")
_SSH_TIMEOUT_BANNER = re.compile(r"^Connection to (?P<host>\S+) port (?P<port>\d+) timed out$")
_SSH_DENIED = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\S+): Permission denied \((?P<methods>[^)]*)\)")
_SSH_KEY_UNKNOWN = re.compile(r"^No \S+ host key is known for (?P<hostport>\S+) and you have "
                              r"requested strict checking")
_SSH_KEY_CHANGED = re.compile(r"^Host key for (?P<hostport>\S+) has changed")
_SSH_FINGERPRINT_AFTER_CHANGE = re.compile(r"^(?P<fp>SHA256:[A-Za-z0-9+/=]+)\.?$")
_SSH_BIND = re.compile(r"^bind \[(?P<address>[^\]]+)\]:(?P<port>\d+): (?P<reason>.+)$")
_SSH_UNIX_BIND = re.compile(r"^unix_listener: cannot bind to path:? (?P<path>\S+): (?P<reason>.+)$")
_PLINK_BIND = re.compile(
    r"^Local port (?P<address>\S+):(?P<port>\d+) forwarding to (?P<to>\S+) failed: (?P<reason>.+)$")
_SSH_REMOTE_FAIL = re.compile(
    r"remote port forwarding failed for listen (?:port (?P<port>\d+)|path (?P<path>\S+))")
_SSH_REMOTE_FAIL_SPEC = re.compile(r"remote forward failure for: listen (?P<listen>\S+), connect")
_PLINK_REMOTE_FAIL = re.compile(r"^Remote port forwarding from (?P<listen>\S+) refused")
_OPEN_FAILED = re.compile(r"^channel (?P<channel>\d+): open failed: (?P<reason>.+)$")
_PLINK_OPEN_FAILED = re.compile(r"^Forwarded connection refused by remote: (?P<reason>.+)$")
_FORWARD_REQUEST = re.compile(
    r"^debug\d: Connection to port (?P<listen>\d+) forwarding to (?P<host>\S+) port (?P<port>\d+)"
    r" requested")
_PLINK_OPEN_REQUEST = re.compile(r"^Opening connection to (?P<target>\S+) for forwarding")
_CLOSED = re.compile(r"^Connection to (?P<host>\S+) closed by remote host\.?$|"
                     r"^Connection closed by (?P<host2>\S+) port (?P<port>\d+)$|"
                     r"^client_loop: send disconnect: (?P<reason>.+)$|"
                     r"^Timeout, server (?P<host3>\S+) not responding\.?$")
_PLINK_FATAL = re.compile(r"^FATAL ERROR: (?P<reason>.+)$")

_REASON_KIND = {
    "connection refused": FailureKind.CONNECTION_REFUSED,
    "connection timed out": FailureKind.TIMED_OUT,
    "timed out": FailureKind.TIMED_OUT,
    "no route to host": FailureKind.UNREACHABLE,
    "network is unreachable": FailureKind.UNREACHABLE,
    "host is unreachable": FailureKind.UNREACHABLE,
    "name or service not known": FailureKind.NAME_NOT_RESOLVED,
    "temporary failure in name resolution": FailureKind.NAME_NOT_RESOLVED,
    "no address associated with hostname": FailureKind.NAME_NOT_RESOLVED,
    "host does not exist": FailureKind.NAME_NOT_RESOLVED,
}


def _reason_kind(reason: str) -> FailureKind | None:
    lowered = reason.lower()
    for needle, kind in _REASON_KIND.items():
        if needle in lowered:
            return kind
    return None


def log_lines(log_text: str) -> list[str]:
    """The log's lines with the ``\\r`` ssh writes at line ends (raw terminal mode) removed."""
    return [line.rstrip("\r").rstrip() for line in log_text.replace("\r\n", "\n").split("\n")]


def open_failures(log_text: str) -> list[str]:
    """``channel N: open failed: ...`` lines (and plink's equivalent): the tunnel host could
    not reach a forward's target, i.e. the server side of the path."""
    return [line for line in log_lines(log_text)
            if _OPEN_FAILED.match(line) or _PLINK_OPEN_FAILED.match(line)]


# --- the diagnosis rules: each finds its failure or returns None ------------------------------

_Rule = Callable[[_Context], "Diagnosis | None"]


def _connect_hint(kind: FailureKind, hop: _Hop) -> str:
    where = f"{hop.host} port {hop.port}"
    return {
        FailureKind.CONNECTION_REFUSED:
            f"nothing accepts connections on {where}: check the port and that sshd runs there",
        FailureKind.TIMED_OUT:
            f"no answer from {where}: a firewall may drop the packets, or the host is down",
        FailureKind.UNREACHABLE:
            f"this machine has no route to {hop.host}: check the network, VPN or address",
        FailureKind.NAME_NOT_RESOLVED:
            f"check the spelling of {hop.host!r}, your DNS, or an ssh config alias for it",
    }.get(kind, "")


def _connection_diagnosis(ctx: _Context, hop: _Hop, kind: FailureKind, reason: str) -> Diagnosis:
    what = {
        FailureKind.CONNECTION_REFUSED: "refused the connection",
        FailureKind.TIMED_OUT: "did not answer in time",
        FailureKind.UNREACHABLE: "cannot be reached",
        FailureKind.NAME_NOT_RESOLVED: "has a name that does not resolve",
    }[kind]
    return Diagnosis(kind, Segment.GATEWAY, hop.label, f"the {hop.label} {what} ({reason})",
                     _connect_hint(kind, hop), {"host": hop.host, "port": str(hop.port),
                                                "reason": reason}, ctx.profile.name)


def _rule_host_key_changed(ctx: _Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = _SSH_KEY_CHANGED.match(line)
        pinned_mismatch = line.startswith("Host key not in manually configured list") or \
            "POTENTIAL SECURITY BREACH" in line or "does not match the one PuTTY has cached" in line
        if not match and not pinned_mismatch:
            continue
        host, port = _split_host_port(match["hostport"]) if match else (None, None)
        hop = ctx.hop_for(i, host, port)
        fingerprint = _fingerprint_before(ctx.lines, i) or _fingerprint_after_change(ctx.lines)
        details = {"host": hop.host, "port": str(hop.port)}
        if fingerprint:
            details["fingerprint"] = fingerprint
        shown = f" (it now presents {fingerprint})" if fingerprint else ""
        return Diagnosis(
            FailureKind.HOST_KEY_CHANGED, Segment.GATEWAY, hop.label,
            f"WARNING: the host key of the {hop.label} has CHANGED{shown}: someone may be "
            "intercepting the connection, so it was refused",
            "do not connect and do not accept this key: confirm the server's new key with its "
            "administrator through another channel; sshwrap never accepts a changed key",
            details, ctx.profile.name)
    return None


def _fingerprint_before(lines: list[str], index: int) -> str | None:
    for line in reversed(lines[:index]):
        match = _SERVER_KEY.match(line) or _PLINK_KEY.match(line.strip())
        if match:
            return match["fp"]
    return None


def _fingerprint_after_change(lines: list[str]) -> str | None:
    for i, line in enumerate(lines):
        if line.startswith("The fingerprint for the") and i + 1 < len(lines):
            match = _SSH_FINGERPRINT_AFTER_CHANGE.match(lines[i + 1].strip())
            if match:
                return match["fp"]
    return None


def _rule_host_key_unknown(ctx: _Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = _SSH_KEY_UNKNOWN.match(line)
        plink = line.startswith(("The host key is not cached", "Cannot confirm a host key"))
        # A ProxyJump child does not get the -o options of its parent: with its default
        # "ask" and no terminal, an unknown key shows only as a failed verification.
        asked = line == "Host key verification failed." and any(
            ln.startswith("debug1: read_passphrase: can't open /dev/tty") for ln in ctx.lines[:i])
        if not match and not plink and not asked:
            continue
        host, port = _split_host_port(match["hostport"]) if match else (None, None)
        hop = ctx.hop_for(i, host, port)
        fingerprint = _fingerprint_before(ctx.lines, i)
        details = {"host": hop.host, "port": str(hop.port)}
        if fingerprint:
            details["fingerprint"] = fingerprint
        shown = f" Its fingerprint is {fingerprint}." if fingerprint else ""
        name = ctx.profile.name or "NAME"
        keyscan = f"ssh-keyscan -p {hop.port} {hop.host} >> ~/.ssh/known_hosts"
        if plink:
            pin = fingerprint or "SHA256:..."
            hint = (f"compare the fingerprint with the one the server's administrator gives you; "
                    f"if they match, pin it in the profile: host_key = \"{pin}\"")
        else:
            hint = (f"compare the fingerprint with the one the server's administrator gives you; "
                    f"if they match, run 'sshwrap trust {name}' or: {keyscan}")
        return Diagnosis(FailureKind.HOST_KEY_UNKNOWN, Segment.GATEWAY, hop.label,
                         f"the host key of the {hop.label} is not known yet.{shown}",
                         hint, details, ctx.profile.name)
    return None


def _rule_auth(ctx: _Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = _SSH_DENIED.match(line)
        plink = line.startswith(("No supported authentication methods available",
                                 "FATAL ERROR: No supported authentication")) or \
            line in ("Access denied", "FATAL ERROR: Access denied")
        if not match and not plink:
            continue
        hop = ctx.hop_for(i, match["host"] if match else None)
        methods = match["methods"] if match else ""
        user = (match["user"] if match else None) or ctx.profile.user or ""
        who = f" as {user}" if user else ""
        details = {"host": hop.host, "port": str(hop.port)}
        if methods:
            details["methods"] = methods
        if user:
            details["user"] = user
        offered = f" (the server accepts: {methods})" if methods else ""
        return Diagnosis(
            FailureKind.AUTH_FAILED, Segment.GATEWAY, hop.label,
            f"the {hop.label} refused authentication{who}{offered}",
            "check the user and identity_file, that the key is in the server's "
            "authorized_keys, and that an encrypted key is loaded in ssh-agent",
            details, ctx.profile.name)
    return None


def _rule_resolve(ctx: _Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = _SSH_RESOLVE.match(line)
        if match:
            hop = ctx.find(match["host"], None) or ctx.current(i)
            return _connection_diagnosis(ctx, hop, FailureKind.NAME_NOT_RESOLVED, match["reason"])
        if line == "Unable to open connection:" and i + 1 < len(ctx.lines):
            reason = ctx.lines[i + 1].strip()
            if _reason_kind(reason) is FailureKind.NAME_NOT_RESOLVED:
                return _connection_diagnosis(ctx, _plink_lookup_hop(ctx, i),
                                             FailureKind.NAME_NOT_RESOLVED, reason)
        fatal = _PLINK_FATAL.match(line)
        if fatal and _reason_kind(fatal["reason"]) is FailureKind.NAME_NOT_RESOLVED:
            return _connection_diagnosis(ctx, _plink_lookup_hop(ctx, i),
                                         FailureKind.NAME_NOT_RESOLVED, fatal["reason"])
    return None


def _plink_lookup_hop(ctx: _Context, index: int) -> _Hop:
    for line in reversed(ctx.lines[:index]):
        match = re.match(r'^Looking up host "(?P<host>[^"]+)"', line)
        if match:
            return ctx.find(match["host"], None) or ctx.hops[0]
    return ctx.hops[0]


def _rule_jump(ctx: _Context) -> Diagnosis | None:
    if "stdio forwarding failed" not in ctx.lines:
        return None
    end = ctx.lines.index("stdio forwarding failed")
    reason = "the connection failed"
    for line in reversed(ctx.lines[:end]):
        match = _OPEN_FAILED.match(line)
        if match:
            reason = match["reason"]
            break
    # The jump host that failed is the last one this path authenticated to.
    jump = ctx.hops[0]
    for line in reversed(ctx.lines[:end]):
        match = _AUTHENTICATED.match(line)
        if match:
            jump = ctx.find(match["host"], int(match["port"])) or jump
            break
    target = ctx.next_after(jump) or ctx.hops[-1]
    detail_reason = reason.removeprefix("connect failed: ")
    return Diagnosis(
        FailureKind.JUMP_CANNOT_REACH_NEXT_HOP, Segment.GATEWAY, jump.label,
        f"the {jump.label} cannot reach the {target.label}: {detail_reason}",
        f"from {jump.host}, check that {target.host} port {target.port} is right and reachable "
        "(sshd running, firewall, name known to the jump host's DNS)",
        {"next_hop": target.label, "host": target.host, "port": str(target.port),
         "reason": detail_reason}, ctx.profile.name)


def _rule_connect(ctx: _Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = _SSH_CONNECT_FAIL.match(line)
        if match:
            kind = _reason_kind(match["reason"]) or FailureKind.UNREACHABLE
            hop = ctx.hop_for(i, match["host"], int(match["port"]))
            return _connection_diagnosis(ctx, hop, kind, match["reason"])
        match = _SSH_TIMEOUT_BANNER.match(line)
        if match:
            hop = ctx.hop_for(i, match["host"], int(match["port"]))
            return _connection_diagnosis(ctx, hop, FailureKind.TIMED_OUT,
                                         "timed out waiting for the ssh greeting")
        plink = re.match(r"^Failed to connect to (?P<host>\S+?): (?P<reason>.+)$", line) or \
            _PLINK_FATAL.match(line)
        if plink:
            plink_kind = _reason_kind(plink["reason"])
            if plink_kind is not None and plink_kind is not FailureKind.NAME_NOT_RESOLVED:
                host = plink.groupdict().get("host")
                return _connection_diagnosis(ctx, ctx.hop_for(i, host), plink_kind,
                                             plink["reason"])
    return None


def _rule_port_taken(ctx: _Context) -> Diagnosis | None:
    for line in ctx.lines:
        match = _SSH_BIND.match(line) or _PLINK_BIND.match(line)
        if match and "in use" in match["reason"].lower():
            address, port = _strip_brackets(match["address"]), match["port"]
            shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            return Diagnosis(
                FailureKind.PORT_TAKEN, Segment.CLIENT, None,
                f"port {port} is already in use on this machine ({shown})",
                f"find who holds it with 'sshwrap ports {port}', then stop that process or "
                "choose another listen port",
                {"port": port, "address": address}, ctx.profile.name)
        unix = _SSH_UNIX_BIND.match(line)
        if unix:
            return Diagnosis(
                FailureKind.PORT_TAKEN, Segment.CLIENT, None,
                f"the socket {unix['path']} cannot be created: {unix['reason']}",
                "remove a stale socket file or choose another path",
                {"path": unix["path"]}, ctx.profile.name)
    return None


def _rule_remote_refused(ctx: _Context) -> Diagnosis | None:
    spec = None
    for line in ctx.lines:
        detail = _SSH_REMOTE_FAIL_SPEC.search(line)
        if detail:
            spec = detail["listen"]
        match = _SSH_REMOTE_FAIL.search(line) or _PLINK_REMOTE_FAIL.match(line)
        if not match:
            continue
        groups = match.groupdict()
        listen = groups.get("listen") or spec or groups.get("path") or groups.get("port") or "?"
        hop = ctx.hops[-1]
        return Diagnosis(
            FailureKind.REMOTE_FORWARD_REFUSED, Segment.GATEWAY, hop.label,
            f"the {hop.label} refused the remote forward on {listen}",
            "the port is busy on the server, or the server forbids it (AllowTcpForwarding, "
            "PermitListen); choose another port or ask its administrator",
            {"listen": listen}, ctx.profile.name)
    return None


def _requested_target(lines: list[str], index: int) -> str | None:
    for line in reversed(lines[:index]):
        match = _FORWARD_REQUEST.match(line)
        if match:
            if match["host"] == "socks":
                return "a SOCKS destination"
            host = match["host"]
            return f"[{host}]:{match['port']}" if ":" in host else f"{host}:{match['port']}"
        plink = _PLINK_OPEN_REQUEST.match(line)
        if plink:
            return plink["target"]
    return None


def _rule_open_failed(ctx: _Context) -> Diagnosis | None:
    hop = ctx.hops[-1]
    for i, line in enumerate(ctx.lines):
        match = _OPEN_FAILED.match(line) or _PLINK_OPEN_FAILED.match(line)
        if not match:
            continue
        reason = match["reason"]
        target = _requested_target(ctx.lines, i)
        details = {"reason": reason}
        if target:
            details["target"] = target
        if "administratively prohibited" in reason.lower():
            return Diagnosis(
                FailureKind.FORWARDING_DISABLED, Segment.GATEWAY, hop.label,
                f"the {hop.label} forbids TCP forwarding ({reason})",
                "the server's sshd_config has AllowTcpForwarding no (or 'remote'), or the key "
                "carries no-port-forwarding / permitopen; ask its administrator",
                details, ctx.profile.name)
        towards = f" {target}" if target else " the forward's target"
        return Diagnosis(
            FailureKind.TARGET_UNREACHABLE, Segment.SERVER, hop.label,
            f"the {hop.label} cannot reach{towards} ({reason})",
            "the tunnel works, but the service behind it does not answer: check the forward's "
            "'to' address (as seen from the tunnel host) and that the service runs",
            details, ctx.profile.name)
    return None


def _rule_closed(ctx: _Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = _CLOSED.match(line)
        plink_closed = "unexpectedly closed network connection" in line
        if not match and not plink_closed:
            continue
        if match and match["reason"] is not None and "broken pipe" not in match["reason"].lower():
            continue
        groups = match.groupdict() if match else {}
        host = groups.get("host") or groups.get("host2") or groups.get("host3")
        port = int(groups["port"]) if groups.get("port") else None
        hop = ctx.hop_for(i, host if host != "UNKNOWN" else None, port)
        if groups.get("host3"):
            return Diagnosis(
                FailureKind.TIMED_OUT, Segment.GATEWAY, hop.label,
                f"the {hop.label} stopped answering keep-alives",
                "the network path or the server went away; sshwrap restarts the tunnel if its "
                "restart policy allows", {"host": hop.host}, ctx.profile.name)
        return Diagnosis(
            FailureKind.CLOSED_BY_REMOTE, Segment.GATEWAY, hop.label,
            f"the {hop.label} closed the connection",
            "the server restarted, dropped the session or limits sessions (MaxStartups, "
            "LoginGraceTime); see its log", {"host": hop.host}, ctx.profile.name)
    return None


#: Most specific first: a jump failure also ends in "Connection closed", a host key failure
#: may be followed by other noise, and "open failed" lines are only the cause when nothing
#: fatal happened.
_RULES: tuple[_Rule, ...] = (
    _rule_host_key_changed,
    _rule_host_key_unknown,
    _rule_auth,
    _rule_resolve,
    _rule_jump,
    _rule_connect,
    _rule_port_taken,
    _rule_remote_refused,
    _rule_closed,
    _rule_open_failed,
)


def diagnose_log(log_text: str, profile: Profile) -> Diagnosis | None:
    """The failure the client's log shows, or None when it shows none."""
    ctx = _Context(profile, log_lines(log_text))
    for rule in _RULES:
        found = rule(ctx)
        if found is not None:
            return found
    return None


def unknown_failure(log_text: str, profile: Profile) -> Diagnosis:
    """A diagnosis for a client that failed without a message sshwrap recognises."""
    tail = [ln for ln in log_lines(log_text) if ln.strip() and not ln.startswith("debug")][-3:]
    last = "; ".join(tail) if tail else "the client wrote nothing"
    return Diagnosis(FailureKind.UNKNOWN, Segment.GATEWAY, None,
                     f"the client failed: {last}", f"see 'sshwrap logs {profile.name}'",
                     {}, profile.name)
