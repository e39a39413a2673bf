"""The kinds of failure, the segments of a path, a diagnosis, and the hops a log talks about."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import sshwrap.core.diagnose.patterns as p
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
    REMOTE_PORT_BUSY = "remote_port_busy"
    REMOTE_FORWARD_FORBIDDEN = "remote_forward_forbidden"
    FORWARDING_DISABLED = "forwarding_disabled"
    TARGET_UNREACHABLE = "target_unreachable"
    JUMP_CANNOT_REACH_NEXT_HOP = "jump_cannot_reach_next_hop"
    CLOSED_BY_REMOTE = "closed_by_remote"
    UNKNOWN = "unknown"


class Segment(StrEnum):
    """Where along the path it failed."""

    CLIENT = "client"  # ingress on this machine
    GATEWAY = "gateway"  # a jump host or the tunnel host
    SERVER = "server side"  # the target behind the tunnel host
    SERVER_POLICY = "server policy"  # the tunnel host's sshd forbids the forward


#: What ssh and plink say when a connection fails, and the kind of failure it is.
REASON_KIND = {
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


def reason_kind(reason: str) -> FailureKind | None:
    lowered = reason.lower()
    for needle, kind in REASON_KIND.items():
        if needle in lowered:
            return kind
    return None


_ERROR_CLASS: dict[FailureKind, type[SshwrapError]] = {
    FailureKind.AUTH_FAILED: AuthFailed,
    FailureKind.HOST_KEY_UNKNOWN: AuthFailed,
    FailureKind.HOST_KEY_CHANGED: AuthFailed,
    FailureKind.PORT_TAKEN: ForwardingFailed,
    FailureKind.REMOTE_PORT_BUSY: ForwardingFailed,
    FailureKind.REMOTE_FORWARD_FORBIDDEN: ForwardingFailed,
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
class PathHop:
    label: str  # "jump host 1 (bastion:2222)" or "tunnel host (db.example)"
    host: str
    port: int


def path_hops(profile: Profile) -> list[PathHop]:
    hops = [PathHop(f"jump host {i} ({hop.render()})", hop.host, hop.port or 22)
            for i, hop in enumerate(profile.jump, start=1)]
    port = profile.port or 22
    shown = profile.host if profile.port is None else f"{profile.host}:{port}"
    hops.append(PathHop(f"tunnel host ({shown})", profile.host, port))
    return hops


def strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def split_host_port(text: str) -> tuple[str, int | None]:
    """``[h]:p``, ``h:p`` or ``h`` (ssh's known_hosts and log spellings)."""
    match = re.fullmatch(r"\[(?P<host>[^\]]+)\]:(?P<port>\d+)", text)
    if match:
        return match["host"], int(match["port"])
    if text.count(":") == 1:
        host, port = text.split(":")
        if port.isdigit():
            return host, int(port)
    return text, None


class Context:
    """Which hop the log is talking about at each line, from the connection messages."""

    def __init__(self, profile: Profile, lines: list[str]) -> None:
        self.profile = profile
        self.hops = path_hops(profile)
        self.lines = lines

    def find(self, host: str | None, port: int | None) -> PathHop | None:
        if host is None:
            return None
        host = strip_brackets(host)
        matches = [h for h in self.hops if h.host == host]
        if port is not None:
            exact = [h for h in matches if h.port == port]
            if exact:
                return exact[0]
        return matches[0] if len(matches) == 1 or (matches and port is None) else None

    def current(self, index: int) -> PathHop:
        """The hop whose connection is the last one opened before line ``index``."""
        for line in reversed(self.lines[:index]):
            match = p.CONNECTING.search(line)
            if match:
                found = self.find(match["host"], int(match["port"]))
                if found is not None:
                    return found
                return self.hops[0]
            match = p.PLINK_CONNECTING.search(line)
            if match:
                found = self.find(match["host"], int(match["port"]))
                return found if found is not None else self.hops[0]
        # Nothing connected yet: the first hop is the one this machine talks to.
        return self.hops[0]

    def hop_for(self, index: int, host: str | None = None, port: int | None = None) -> PathHop:
        return self.find(host, port) or self.current(index)

    def next_after(self, hop: PathHop) -> PathHop | None:
        position = self.hops.index(hop)
        return self.hops[position + 1] if position + 1 < len(self.hops) else None
