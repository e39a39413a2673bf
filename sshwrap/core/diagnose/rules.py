"""The diagnosis rules: which hop failed and why, from an ssh (-v -E) or plink (-v) log."""

from __future__ import annotations

import re
from collections.abc import Callable

import sshwrap.core.diagnose.patterns as p
from sshwrap.core.diagnose.forwards import rule_open_failed, rule_port_taken, rule_remote_refused
from sshwrap.core.diagnose.model import (
    Context,
    Diagnosis,
    FailureKind,
    PathHop,
    Segment,
    reason_kind,
    split_host_port,
)
from sshwrap.core.diagnose.patterns import log_lines
from sshwrap.core.knownhosts import keyscan_command, known_hosts_name
from sshwrap.core.model import AuthMethod, Profile

# --- the diagnosis rules: each finds its failure or returns None ------------------------------

_Rule = Callable[[Context], "Diagnosis | None"]


def _connect_hint(kind: FailureKind, hop: PathHop) -> str:
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


def _connection_diagnosis(ctx: Context, hop: PathHop, kind: FailureKind, reason: str) -> Diagnosis:
    what = {
        FailureKind.CONNECTION_REFUSED: "refused the connection",
        FailureKind.TIMED_OUT: "did not answer in time",
        FailureKind.UNREACHABLE: "cannot be reached",
        FailureKind.NAME_NOT_RESOLVED: "has a name that does not resolve",
    }[kind]
    return Diagnosis(kind, Segment.GATEWAY, hop.label, f"the {hop.label} {what} ({reason})",
                     _connect_hint(kind, hop), {"host": hop.host, "port": str(hop.port),
                                                "reason": reason}, ctx.profile.name)


def _rule_host_key_changed(ctx: Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = p.SSH_KEY_CHANGED.match(line)
        pinned_mismatch = line.startswith("Host key not in manually configured list") or \
            "POTENTIAL SECURITY BREACH" in line or "does not match the one PuTTY has cached" in line
        if not match and not pinned_mismatch:
            continue
        host, port = split_host_port(match["hostport"]) if match else (None, None)
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
        match = p.SERVER_KEY.match(line) or p.PLINK_KEY.match(line.strip())
        if match:
            return match["fp"]
    return None


def _fingerprint_after_change(lines: list[str]) -> str | None:
    for i, line in enumerate(lines):
        if line.startswith("The fingerprint for the") and i + 1 < len(lines):
            match = p.SSH_FINGERPRINT_AFTER_CHANGE.match(lines[i + 1].strip())
            if match:
                return match["fp"]
    return None


def _keyscan_hint(lines: list[str], index: int, looked_up: str | None, hop: PathHop) -> str:
    """The ``ssh-keyscan`` line for the host ssh really connected to (its last "Connecting to"
    before ``index``), recording the key under the name ssh looked up: with a HostKeyAlias
    that is neither the host nor ``[host]:port``."""
    host, port = hop.host, hop.port
    for line in reversed(lines[:index]):
        connecting = p.CONNECTING.match(line)
        if connecting:
            host, port = connecting["host"], int(connecting["port"])
            break
    plain = known_hosts_name(host, port)
    alias = looked_up if looked_up and looked_up not in (plain, host) else ""
    return keyscan_command(host, port, alias, "~/.ssh/known_hosts")


def _rule_host_key_unknown(ctx: Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = p.SSH_KEY_UNKNOWN.match(line)
        plink = line.startswith(("The host key is not cached", "Cannot confirm a host key"))
        # A ProxyJump child does not get the -o options of its parent: with its default
        # "ask" and no terminal, an unknown key shows only as a failed verification.
        asked = line == "Host key verification failed." and any(
            ln.startswith("debug1: read_passphrase: can't open /dev/tty") for ln in ctx.lines[:i])
        if not match and not plink and not asked:
            continue
        host, port = split_host_port(match["hostport"]) if match else (None, None)
        hop = ctx.hop_for(i, host, port)
        fingerprint = _fingerprint_before(ctx.lines, i)
        details = {"host": hop.host, "port": str(hop.port)}
        if fingerprint:
            details["fingerprint"] = fingerprint
        shown = f" Its fingerprint is {fingerprint}." if fingerprint else ""
        name = ctx.profile.name or "NAME"
        keyscan = _keyscan_hint(ctx.lines, i, match["hostport"] if match else None, hop)
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


def _auth_hint(profile: Profile, methods: str) -> str:
    """What to check, for the way this profile logs in: never key advice to a password user."""
    accepted = {m.strip() for m in methods.split(",") if m.strip()}
    if profile.auth is AuthMethod.PASSWORD:
        if accepted and not accepted & {"password", "keyboard-interactive"}:
            return (f"the server does not take passwords (it accepts: {methods}): ask its "
                    "administrator for a key login and set auth = \"key\"")
        where = (f"${profile.password_env} (or type it with --ask-password)"
                 if profile.password_env else
                 f"the keyring's (change it with 'sshwrap password set {profile.name}')"
                 if profile.password_keyring else "the one typed with --ask-password")
        return f"check the user and the password: sshwrap sent {where}"
    if accepted == {"keyboard-interactive"}:
        return (f"the server asks questions (keyboard-interactive) instead of taking the "
                f"key: run 'sshwrap up {profile.name}' on a terminal to answer them")
    if accepted and "publickey" not in accepted:
        return (f"the server does not take keys (it accepts: {methods}): set "
                "auth = \"password\" and password_env")
    return ("check the user and identity_file, that the key is in the server's "
            "authorized_keys, and that an encrypted key is loaded in ssh-agent (or run "
            "with --ask-passphrase)")


_ACCEPTED = {"publickey": "the key", "password": "the password",
             "keyboard-interactive": "the first answers", "hostbased": "the host"}


def _second_factor(ctx: Context, index: int, hop: PathHop, who: str,
                   details: dict[str, str]) -> Diagnosis | None:
    """A login that failed after a partial success (the key or password accepted, another
    method still required, most often keyboard-interactive: a one-time code); None if not.
    Never a password hint: no password helps a second factor."""
    before: list[str] = []
    for line in reversed(ctx.lines[:index]):
        if p.CONNECTING.match(line) or p.AUTHENTICATED.match(line):
            break  # an earlier hop's lines
        before.append(line)
    partial = [m for m in map(p.SSH_PARTIAL.match, before) if m]
    plink = any(line.startswith(p.PLINK_PARTIAL) for line in before)
    if not partial and not plink:
        return None
    accepted = _ACCEPTED.get(partial[0]["method"], partial[0]["method"]) if partial \
        else "the first method"
    required = details.get("methods", "") or "keyboard-interactive"
    name = ctx.profile.name
    head = f"the {hop.label} accepted {accepted}{who}, but also requires {required}"
    if "keyboard-interactive" not in required:
        return Diagnosis(FailureKind.AUTH_FAILED, Segment.GATEWAY, hop.label,
                         f"{head}, which sshwrap cannot do here",
                         "ask the server's administrator which methods it requires",
                         {**details, "required": required}, name)
    if plink:
        return Diagnosis(FailureKind.AUTH_FAILED, Segment.GATEWAY, hop.label,
                         f"{head} (a second factor such as a one-time code), and plink "
                         "cannot answer such questions under sshwrap",
                         "set client = \"ssh\": sshwrap asks ssh's questions on your terminal",
                         {**details, "required": required}, name)
    tried = p.SSH_KBDINT_TRIED in before and p.NOBODY_TO_ASK not in ctx.lines
    if tried:
        return Diagnosis(FailureKind.AUTH_FAILED, Segment.GATEWAY, hop.label,
                         f"{head}: it refused the answer to its second factor (a wrong or "
                         "expired one-time code?)",
                         f"run 'sshwrap up {name}' again with a fresh code (each start "
                         "answers once: no retry can lock the account)",
                         {**details, "required": required}, name)
    return Diagnosis(FailureKind.AUTH_FAILED, Segment.GATEWAY, hop.label,
                     f"{head}: it needs a one-time code (or another answer) from a person, "
                     "and nobody could be asked",
                     f"run 'sshwrap up {name}' on a terminal and answer the server's question",
                     {**details, "required": required}, name)


def _rule_auth(ctx: Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = p.SSH_DENIED.match(line)
        plink = line.startswith(("No supported authentication methods available",
                                 "FATAL ERROR: No supported authentication",
                                 "FATAL ERROR: Cannot answer interactive prompts")) or \
            line in ("Access denied", "FATAL ERROR: Access denied",
                     # -pwfile's password refused (for keyboard-interactive: a second factor)
                     "FATAL ERROR: Configured password was not accepted")
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
        second = _second_factor(ctx, i, hop, who, details)
        if second is not None:
            return second
        offered = f" (the server accepts: {methods})" if methods else ""
        return Diagnosis(
            FailureKind.AUTH_FAILED, Segment.GATEWAY, hop.label,
            f"the {hop.label} refused authentication{who}{offered}",
            _auth_hint(ctx.profile, methods), details, ctx.profile.name)
    return None


def _rule_resolve(ctx: Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = p.SSH_RESOLVE.match(line)
        if match:
            hop = ctx.find(match["host"], None) or ctx.current(i)
            return _connection_diagnosis(ctx, hop, FailureKind.NAME_NOT_RESOLVED, match["reason"])
        if line == "Unable to open connection:" and i + 1 < len(ctx.lines):
            reason = ctx.lines[i + 1].strip()
            if reason_kind(reason) is FailureKind.NAME_NOT_RESOLVED:
                return _connection_diagnosis(ctx, _plink_lookup_hop(ctx, i),
                                             FailureKind.NAME_NOT_RESOLVED, reason)
        fatal = p.PLINK_FATAL.match(line)
        if fatal and reason_kind(fatal["reason"]) is FailureKind.NAME_NOT_RESOLVED:
            return _connection_diagnosis(ctx, _plink_lookup_hop(ctx, i),
                                         FailureKind.NAME_NOT_RESOLVED, fatal["reason"])
    return None


def _plink_lookup_hop(ctx: Context, index: int) -> PathHop:
    for line in reversed(ctx.lines[:index]):
        match = re.match(r'^Looking up host "(?P<host>[^"]+)"', line)
        if match:
            return ctx.find(match["host"], None) or ctx.hops[0]
    return ctx.hops[0]


def _rule_jump(ctx: Context) -> Diagnosis | None:
    if "stdio forwarding failed" not in ctx.lines:
        return None
    end = ctx.lines.index("stdio forwarding failed")
    reason = "the connection failed"
    for line in reversed(ctx.lines[:end]):
        match = p.OPEN_FAILED.match(line)
        if match:
            reason = match["reason"]
            break
    # The jump host that failed is the last one this path authenticated to.
    jump = ctx.hops[0]
    for line in reversed(ctx.lines[:end]):
        match = p.AUTHENTICATED.match(line)
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


def _rule_connect(ctx: Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = p.SSH_CONNECT_FAIL.match(line)
        if match:
            kind = reason_kind(match["reason"]) or FailureKind.UNREACHABLE
            hop = ctx.hop_for(i, match["host"], int(match["port"]))
            return _connection_diagnosis(ctx, hop, kind, match["reason"])
        match = p.SSH_TIMEOUT_BANNER.match(line)
        if match:
            hop = ctx.hop_for(i, match["host"], int(match["port"]))
            return _connection_diagnosis(ctx, hop, FailureKind.TIMED_OUT,
                                         "timed out waiting for the ssh greeting")
        plink = re.match(r"^Failed to connect to (?P<host>\S+?): (?P<reason>.+)$", line) or \
            p.PLINK_FATAL.match(line)
        if plink:
            plink_kind = reason_kind(plink["reason"])
            if plink_kind is not None and plink_kind is not FailureKind.NAME_NOT_RESOLVED:
                host = plink.groupdict().get("host")
                return _connection_diagnosis(ctx, ctx.hop_for(i, host), plink_kind,
                                             plink["reason"])
    return None



def _rule_closed(ctx: Context) -> Diagnosis | None:
    for i, line in enumerate(ctx.lines):
        match = p.CLOSED.match(line)
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
    rule_port_taken,
    rule_remote_refused,
    _rule_closed,
    rule_open_failed,
)


def diagnose_log(log_text: str, profile: Profile) -> Diagnosis | None:
    """The failure the client's log shows, or None when it shows none."""
    ctx = Context(profile, log_lines(log_text))
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
