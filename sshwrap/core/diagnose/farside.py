"""A remote forward proven from the far side: what the tunnel's log says of each probe (pure).

A probe is a connection made *on the tunnel host*, by its own sshd (a ``direct-tcpip``
channel), to an address the server may have bound for a remote forward. The tunnel's log
tells where it went: ``client_request_forwarded_tcpip`` with an originator of the probed
family means it arrived at this tunnel; ``open failed`` says why it was not made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sshwrap.core.diagnose.patterns import CHANNEL_NEW, OPEN_FAILED, STDIO_FORWARD, log_lines

#: ssh -v, for each connection a remote forward receives: "client_request_forwarded_tcpip:
#: listen localhost port 8081, originator ::1 port 49714".
ARRIVAL = re.compile(r"client_request_forwarded_tcpip: listen (?P<listen>\S+) port "
                     r"(?P<port>\d+), originator (?P<origin>\S+) port \d+")
#: ssh -v, as the master opens a mux client's ``-W ADDR:PORT``: "channel_connect_stdio_fwd:
#: ::1:8081", then "channel 3: new stdio-forward".
STDIO_OPEN = re.compile(r"^debug\d: channel_connect_stdio_fwd: (?P<address>\S+):(?P<port>\d+)$")
#: What sshd says when it cannot even try to connect (the tunnel host has no such address:
#: no ::1): OpenSSH 9 sends "connect failed: open failed" for a connect that fails at once,
#: and names the error elsewhere. Nothing listening is "Connection refused"; a squatter
#: accepts.
NO_FAMILY = ("connect failed: open failed", "cannot assign requested address",
             "network is unreachable", "address family not supported")
LOOPBACKS = ("127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "*")


class Outcome(StrEnum):
    PROVEN = "proven"  # the probe arrived at this tunnel
    HELD = "held"  # another program accepted it: the forward does not own this address
    ABSENT = "absent"  # the tunnel host has no such address (no ::1): nothing to own
    NOT_BOUND = "not bound"  # nothing listens there (the server bound another family)
    POLICY = "policy"  # the server forbids the probe's channel: not proven
    UNKNOWN = "unknown"  # no verdict (no answer, no control socket): not proven

    @property
    def failure(self) -> bool:
        return self is Outcome.HELD


@dataclass(frozen=True)
class AddressProof:
    """One probed address of a remote forward and what became of the probe."""

    address: str
    port: int
    outcome: Outcome
    reason: str = ""

    @property
    def where(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"


def probe_addresses(host: str | None) -> tuple[str, ...]:
    """Every address the server may have bound for a remote forward's listen ``host``: both
    loopback families for a bare port, ``localhost`` or every address (sshd binds each one
    it has and succeeds if any binds), the family's loopback for a wildcard of one family,
    the address itself otherwise."""
    if host is None or host in WILDCARD_HOSTS or host in ("localhost", "ip6-localhost"):
        return LOOPBACKS
    if host == "0.0.0.0":  # noqa: S104 - compared, never bound
        return ("127.0.0.1",)
    if host == "::":
        return ("::1",)
    return (host.strip("[]"),)


def _family(address: str) -> str | None:
    if address.startswith("::ffff:") and "." in address:
        return "4"
    if ":" in address:
        return "6"
    if re.fullmatch(r"[0-9.]+", address):
        return "4"
    return None


def arrived(log_text: str, port: int, address: str) -> bool:
    """A connection came in on the remote forward of ``port`` from ``address``'s family: a
    probe of ``address`` reached this tunnel (a name's probe: any connection on the port)."""
    wanted = _family(address)
    for match in ARRIVAL.finditer(log_text):
        if int(match["port"]) != port:
            continue
        if wanted is None or _family(match["origin"]) == wanted:
            return True
    return False


def refusal(log_text: str, address: str, port: int) -> str | None:
    """Why the tunnel host's sshd did not open the probe's channel to ``address:port``, from
    the master's log (``open failed``); None when it says nothing of it."""
    pending: dict[str, bool] = {}  # channel -> it is this probe's
    asked = False
    for line in log_lines(log_text):
        opening = STDIO_OPEN.match(line)
        if opening:
            asked = opening["address"].strip("[]") == address and int(opening["port"]) == port
            continue
        new = CHANNEL_NEW.match(line)
        if new:
            if new["kind"] == STDIO_FORWARD:
                pending[new["channel"]] = asked
            asked = False
            continue
        failed = OPEN_FAILED.match(line)
        if failed and pending.get(failed["channel"]):
            return failed["reason"]
    return None


def judge(address: str, port: int, *, opened: bool | None, log_text: str,
          said: str = "") -> AddressProof:
    """The verdict of one probe: ``opened`` True once sshd confirmed its channel, False when it
    refused it, None when neither was seen in time; ``said`` is the mux client's complaint."""
    if arrived(log_text, port, address):
        return AddressProof(address, port, Outcome.PROVEN)
    if opened:
        return AddressProof(address, port, Outcome.HELD,
                            "a connection made there on the tunnel host did not reach this "
                            "tunnel: another program accepted it")
    if opened is None:
        return AddressProof(address, port, Outcome.UNKNOWN, said or "no answer to the probe")
    reason = refusal(log_text, address, port) or said or "the channel was refused"
    return AddressProof(address, port, _refused(reason.lower()), reason)


def _refused(reason: str) -> Outcome:
    """What sshd's refusal of a probe's channel says of the address (``reason`` lowered)."""
    if "administratively prohibited" in reason:
        return Outcome.POLICY
    if any(text in reason for text in NO_FAMILY):
        return Outcome.ABSENT
    if "connection refused" in reason:
        return Outcome.NOT_BOUND
    return Outcome.UNKNOWN


#: Where the server's policy on the probe's channel (a direct-tcpip) is set.
PROBE_POLICY = "AllowTcpForwarding remote, PermitOpen or DisableForwarding"


def verdict(proofs: tuple[AddressProof, ...], host: str) -> tuple[bool, str]:
    """Whether a remote forward failed its proof, and the words for it (a status detail, a
    check's step, an error's message).

    An address held by another program fails it. Nothing bound on a family the server has is
    no failure while another family is proven (sshd's ``AddressFamily``); with no family
    proven it fails too: no connection made on the tunnel host reaches the tunnel.
    """
    held = [p for p in proofs if p.outcome is Outcome.HELD]
    if held:
        where = " and ".join(p.where for p in held)
        return True, f"{where} on the tunnel host ({host}) is held by another program: " \
                     "connections made there do not reach this tunnel"
    proven = [p for p in proofs if p.outcome is Outcome.PROVEN]
    unbound = [p for p in proofs if p.outcome is Outcome.NOT_BOUND]
    if unbound and not proven:
        where = " and ".join(p.where for p in unbound)
        return True, f"nothing listens on {where} on the tunnel host ({host}): " \
                     "connections made there do not reach this tunnel"
    notes = []
    if proven:
        notes.append(f"proven from the tunnel host ({host}) on "
                     + " and ".join(p.where for p in proven))
    policy = [p for p in proofs if p.outcome is Outcome.POLICY]
    if policy:
        notes.append(f"far side not proven on {' and '.join(p.where for p in policy)}: server "
                     f"policy forbids the probe ({PROBE_POLICY}): {policy[0].reason}")
    unknown = [p for p in proofs if p.outcome is Outcome.UNKNOWN]
    if unknown:
        notes.append(f"far side not proven on {' and '.join(p.where for p in unknown)}: "
                     f"{unknown[0].reason}")
    absent = [p for p in proofs if p.outcome is Outcome.ABSENT]
    if absent:
        notes.append(f"the tunnel host has no {' or '.join(p.address for p in absent)} (its "
                     "sshd cannot connect there)")
    notes += [f"nothing listens on {p.where} (the server bound another family)"
              for p in unbound]
    return False, "; ".join(notes)
