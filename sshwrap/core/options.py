"""The ssh options a profile may set: an allow-list, each option with the grammar of its value."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sshwrap.core import syntax
from sshwrap.textsafe import shown

_ALGORITHMS_RE = re.compile(r"[+^-]?[A-Za-z0-9@._*-]+(?:,[A-Za-z0-9@._*-]+)*")
_METHODS_RE = re.compile(r"[a-z0-9@.-]+(?:,[a-z0-9@.-]+)*")
_IPQOS_RE = re.compile(r"[a-z0-9]{1,16}")
_REKEY_RE = re.compile(r"default|[0-9]{1,12}[KMG]?")
#: The longest option value taken (as long as a path may be); every allowed value is shorter.
MAX_OPTION_VALUE = syntax.MAX_PATH_LENGTH


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise syntax.SyntaxProblem(f"{name} takes a string, not {type(value).__name__}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        text = _text(name, value)
        if not pattern.fullmatch(text):
            raise syntax.SyntaxProblem(f"{name} value {shown(text)} is not {what}")
        return text

    return check


def _yes_no(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.isascii() and value.lower() in ("yes", "no"):
        return value.lower()
    raise syntax.SyntaxProblem(f"{name} takes true or false, not {shown(value)}")


def _number(low: int, high: int) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if isinstance(value, str) and syntax.PORT_RE.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise syntax.SyntaxProblem(f"{name} takes a number from {low} to {high}, "
                                       f"not {shown(value)}")
        return str(value)

    return check


def _one_of(*choices: str) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if isinstance(value, str) and value.isascii() and value.lower() in choices:
            return value.lower()
        raise syntax.SyntaxProblem(f"{name} takes one of {', '.join(choices)}, not {shown(value)}")

    return check


def _path(name: str, value: object) -> str:
    return syntax.check_path(_text(name, value), name)


def _agent(name: str, value: object) -> str:
    text = _text(name, value)
    return text if text in ("none", "SSH_AUTH_SOCK") else _path(name, text)


def _bind_address(name: str, value: object) -> str:
    return syntax.check_host(_text(name, value), name)


def _interface(name: str, value: object) -> str:
    return syntax.check_interface(_text(name, value), name)


_ALGORITHMS = _matching(_ALGORITHMS_RE, "a comma-separated list of algorithm names")


@dataclass(frozen=True)
class Allowed:
    """An option a profile may set: its spelling in ssh's manual and its value's grammar."""

    name: str
    check: Callable[[str, object], str]


#: Options that choose algorithms, time-outs, addresses and credentials, but cannot change
#: which host is reached, how its key is checked, how often a password is tried, what runs,
#: what is written or bound, or what is sent to the server.
ALLOWED: dict[str, Allowed] = {a.name.lower(): a for a in (
    Allowed("Ciphers", _ALGORITHMS),
    Allowed("MACs", _ALGORITHMS),
    Allowed("KexAlgorithms", _ALGORITHMS),
    Allowed("HostKeyAlgorithms", _ALGORITHMS),
    Allowed("PubkeyAcceptedAlgorithms", _ALGORITHMS),
    Allowed("PubkeyAcceptedKeyTypes", _ALGORITHMS),
    Allowed("CASignatureAlgorithms", _ALGORITHMS),
    Allowed("ConnectTimeout", _number(1, 3600)),
    Allowed("ConnectionAttempts", _number(1, 100)),
    Allowed("AddressFamily", _one_of("any", "inet", "inet6")),
    Allowed("IPQoS", _matching(_IPQOS_RE, "one DSCP class (af21, cs1, ef, lowdelay, ...)")),
    Allowed("TCPKeepAlive", _yes_no),
    Allowed("IdentitiesOnly", _yes_no),
    Allowed("IdentityAgent", _agent),
    Allowed("CertificateFile", _path),
    Allowed("PreferredAuthentications", _matching(
        _METHODS_RE, "a comma-separated list of authentication methods")),
    Allowed("PubkeyAuthentication", _yes_no),
    Allowed("GSSAPIAuthentication", _yes_no),
    Allowed("RekeyLimit", _matching(_REKEY_RE, "one amount such as 1G or 'default'")),
    Allowed("RequiredRSASize", _number(1024, 16384)),
    Allowed("BindAddress", _bind_address),
    Allowed("BindInterface", _interface),
)}

_HOST_KEY = "use the 'host_key' key (and 'sshwrap trust')"
_AUTH = "a wrong password is one attempt; use the 'auth' key"
_FORWARD = "use a [[forward]] table"
_RUNS = "runs a command or a program of its own"
_SENDS = "sends something from this machine to the server"
#: Refused options that a profile key expresses, or that sshwrap refuses for a reason worth
#: naming; every other option not in ALLOWED is refused too.
REFUSED: dict[str, str] = {name.lower(): reason for name, reason in {
    "HostName": "use the 'host' key", "User": "use the 'user' key",
    "Port": "use the 'port' key", "IdentityFile": "use the 'identity_file' key",
    "ProxyJump": "use the 'jump' key", "ProxyCommand": "use the 'jump' key",
    "Compression": "use the 'compression' key",
    "ServerAliveInterval": "use the 'keepalive' key",
    "ServerAliveCountMax": "sshwrap sets it from the 'keepalive' key",
    "StrictHostKeyChecking": _HOST_KEY, "UserKnownHostsFile": _HOST_KEY,
    "GlobalKnownHostsFile": _HOST_KEY, "NoHostAuthenticationForLocalhost": _HOST_KEY,
    "HostKeyAlias": "changes which known key is checked; set it in your own ssh config",
    "CheckHostIP": _HOST_KEY, "VerifyHostKeyDNS": _HOST_KEY, "UpdateHostKeys": _HOST_KEY,
    "RevokedHostKeys": _HOST_KEY, "FingerprintHash": "sshwrap reads SHA256 fingerprints",
    "KnownHostsCommand": _RUNS,
    "NumberOfPasswordPrompts": _AUTH, "PasswordAuthentication": _AUTH,
    "KbdInteractiveAuthentication": _AUTH, "ChallengeResponseAuthentication": _AUTH,
    "BatchMode": "sshwrap decides when ssh may prompt",
    "LocalForward": _FORWARD, "RemoteForward": _FORWARD, "DynamicForward": _FORWARD,
    "GatewayPorts": "set public = true on the [[forward]] that should listen beyond loopback",
    "StreamLocalBindUnlink": "sshwrap never lets ssh remove an existing file",
    "StreamLocalBindMask": "sshwrap keeps unix sockets private to their owner",
    "ExitOnForwardFailure": "sshwrap always sets it", "ClearAllForwardings": _FORWARD,
    "ControlMaster": "use the 'share_connection' key",
    "ControlPath": "use the 'share_connection' key",
    "ControlPersist": "use the 'share_connection' key",
    "ForwardAgent": _SENDS, "ForwardX11": _SENDS, "ForwardX11Trusted": _SENDS,
    "SendEnv": _SENDS, "SetEnv": _SENDS, "GSSAPIDelegateCredentials": _SENDS,
    "ProxyUseFdpass": _RUNS, "LocalCommand": _RUNS, "PermitLocalCommand": _RUNS,
    "RemoteCommand": _RUNS, "PKCS11Provider": _RUNS, "SecurityKeyProvider": _RUNS,
    "XAuthLocation": _RUNS, "EnableSSHKeysign": _RUNS, "HostbasedAuthentication": _RUNS,
    "Tunnel": "a tun device is a VPN, not a forward", "TunnelDevice": "a tun device is a VPN",
    "CanonicalizeHostname": "changes which host is reached; use the 'host' key",
    "CanonicalDomains": "changes which host is reached; use the 'host' key",
    "LogLevel": "sshwrap sets it", "SessionType": "sshwrap sets it",
    "RequestTTY": "sshwrap sets it", "ForkAfterAuthentication": "sshwrap runs ssh itself",
    "StdinNull": "sshwrap runs ssh itself",
    "Host": "is a config block keyword, not an option",
    "Match": "is a config block keyword, not an option",
    "Include": "is a config block keyword, not an option",
    "IgnoreUnknown": "is a config block keyword, not an option",
}.items()}


def check_option(name: str, value: object) -> tuple[str, str]:
    """The option's canonical name and checked value; raises SyntaxProblem naming the key to
    use instead (ssh matches option names ignoring case, and so does this list)."""
    if not syntax.OPTION_NAME_RE.fullmatch(name):
        raise syntax.SyntaxProblem("is not an ssh option name (ASCII letters and digits only)")
    allowed = ALLOWED.get(name.lower())
    if allowed is not None:
        if isinstance(value, str) and len(value) > MAX_OPTION_VALUE:
            raise syntax.SyntaxProblem(f"value is {len(value)} characters long; at most "
                                       f"{MAX_OPTION_VALUE}")
        return allowed.name, allowed.check(allowed.name, value)
    reason = REFUSED.get(name.lower())
    if reason is None:
        import difflib  # only for a typo: its import costs every command

        names = [a.name for a in ALLOWED.values()]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        reason = (f"did you mean {close[0]}?" if close
                  else "it is not on the list of options a profile may set (see the README)")
    raise syntax.SyntaxProblem(f"{name} is refused: {reason}")
