"""What ssh and plink write in their logs, as regular expressions, and the log's lines."""

from __future__ import annotations

import re

CONNECTING = re.compile(r"^debug\d: Connecting to (?P<host>\S+) \[[^\]]*\] port (?P<port>\d+)\.")
PLINK_CONNECTING = re.compile(r"^Connecting to (?P<host>\S+) port (?P<port>\d+)$")
AUTHENTICATED = re.compile(r"^Authenticated to (?P<host>\S+) \(\[[^\]]*\]:(?P<port>\d+)\)")
SERVER_KEY = re.compile(r"^debug\d: Server host key: \S+ (?P<fp>SHA256:\S+)")
PLINK_KEY = re.compile(r"^(?:ssh-\S+|ecdsa-\S+|rsa\S*) \d+ (?P<fp>SHA256:\S+)$")
SSH_CONNECT_FAIL = re.compile(
    r"^ssh: connect to host (?P<host>\S+) port (?P<port>\d+): (?P<reason>.+)$")
SSH_RESOLVE = re.compile(r"^ssh: Could not resolve hostname (?P<host>\S+): (?P<reason>.+)$")
SSH_TIMEOUT_BANNER = re.compile(r"^Connection to (?P<host>\S+) port (?P<port>\d+) timed out$")
SSH_DENIED = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\S+): Permission denied \((?P<methods>[^)]*)\)")
SSH_KEY_UNKNOWN = re.compile(r"^No \S+ host key is known for (?P<hostport>\S+) and you have "
                              r"requested strict checking")
SSH_KEY_CHANGED = re.compile(r"^Host key for (?P<hostport>\S+) has changed")
SSH_FINGERPRINT_AFTER_CHANGE = re.compile(r"^(?P<fp>SHA256:[A-Za-z0-9+/=]+)\.?$")
SSH_BIND = re.compile(r"^bind \[(?P<address>[^\]]+)\]:(?P<port>\d+): (?P<reason>.+)$")
SSH_UNIX_BIND = re.compile(r"^unix_listener: cannot bind to path:? (?P<path>\S+): (?P<reason>.+)$")
PLINK_BIND = re.compile(
    r"^Local port (?P<address>\S+):(?P<port>\d+) forwarding to (?P<to>\S+) failed: (?P<reason>.+)$")
SSH_REMOTE_FAIL = re.compile(
    r"remote port forwarding failed for listen (?:port (?P<port>\d+)|path (?P<path>\S+))")
SSH_REMOTE_FAIL_SPEC = re.compile(r"remote forward failure for: listen (?P<listen>\S+), connect")
PLINK_REMOTE_FAIL = re.compile(r"^Remote port forwarding from (?P<listen>\S+) refused")
OPEN_FAILED = re.compile(r"^channel (?P<channel>\d+): open failed: (?P<reason>.+)$")
PLINK_OPEN_FAILED = re.compile(r"^Forwarded connection refused by remote: (?P<reason>.+)$")
FORWARD_REQUEST = re.compile(
    r"^debug\d: Connection to port (?P<listen>\d+) forwarding to (?P<host>\S+) port (?P<port>\d+)"
    r" requested")
PLINK_OPEN_REQUEST = re.compile(r"^Opening connection to (?P<target>\S+) for forwarding")
CLOSED = re.compile(r"^Connection to (?P<host>\S+) closed by remote host\.?$|"
                    r"^Connection closed by (?P<host2>\S+) port (?P<port>\d+)$|"
                    r"^client_loop: send disconnect: (?P<reason>.+)$|"
                    r"^Timeout, server (?P<host3>\S+) not responding\.?$")
PLINK_FATAL = re.compile(r"^FATAL ERROR: (?P<reason>.+)$")
#: ssh -v: a channel the client opens and names (a mux client's ``-W``: the far-side proof).
CHANNEL_NEW = re.compile(r"^debug\d: channel (?P<channel>\d+): new (?P<kind>[\w-]+)")
STDIO_FORWARD = "stdio-forward"

#: A method the server accepted while it still requires another (AuthenticationMethods).
SSH_PARTIAL = re.compile(
    r'^(?:debug\d: )?Authenticated using "(?P<method>[^"]+)" with partial success')
SSH_KBDINT_TRIED = "debug1: Next authentication method: keyboard-interactive"
PLINK_PARTIAL = "Further authentication required"
#: What sshwrap writes in the tunnel's log when a server's question finds nobody to answer it.
NOBODY_TO_ASK = ("sshwrap: the server asked a keyboard-interactive question and nobody can "
                 "answer it here")


def log_lines(log_text: str) -> list[str]:
    """The log's lines with the ``\\r`` ssh writes at line ends (raw terminal mode) removed."""
    return [line.rstrip("\r").rstrip() for line in log_text.replace("\r\n", "\n").split("\n")]


def proof_failures(lines: list[str]) -> set[int]:
    """Indices of the ``open failed`` lines of stdio-forward channels: sshwrap's own far-side
    proofs (runtime/supervise/farside.py), whose refusals are their verdict, never a forward's."""
    kinds: dict[str, str] = {}
    found = set()
    for index, line in enumerate(lines):
        new = CHANNEL_NEW.match(line)
        if new:
            kinds[new["channel"]] = new["kind"]
            continue
        failed = OPEN_FAILED.match(line)
        if failed and kinds.get(failed["channel"]) == STDIO_FORWARD:
            found.add(index)
    return found


def open_failures(log_text: str) -> list[str]:
    """``channel N: open failed: ...`` lines (and plink's equivalent): the tunnel host could
    not reach a forward's target, i.e. the server side of the path."""
    lines = log_lines(log_text)
    proofs = proof_failures(lines)
    return [line for i, line in enumerate(lines) if i not in proofs
            and (OPEN_FAILED.match(line) or PLINK_OPEN_FAILED.match(line))]
