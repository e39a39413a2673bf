"""Read a pasted OpenSSH command line into a profile mapping that ``parse_profile`` validates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sshwrap.core import syntax
from sshwrap.core.options import check_option
from sshwrap.errors import InvalidInput, Problem
from sshwrap.textsafe import shown

SOURCE = "ssh command line"

#: ssh's own option letters (from its getopt string): those that take an argument...
_TAKES_ARGUMENT = frozenset("BbcDEeFIiJLlmOoPpQRSWw")
#: ...and those that do not.
_NO_ARGUMENT = frozenset("1246AaCfGgKkMNnqsTtVvXxYy")
#: Flags that change nothing a tunnel profile describes (sshwrap decides them itself).
_NO_EFFECT = frozenset("NfTnqv")

_REFUSED_FLAGS: dict[str, str] = {
    "w": "tun/tap device forwarding (-w) is a VPN, not a port forward",
    "M": "connection sharing (-M) is managed by sshwrap (share_connection)",
    "S": "a control socket (-S) is managed by sshwrap (share_connection)",
    "O": "control commands (-O) talk to a running master, they open no tunnel",
    "W": "stdio forwarding (-W) is what a jump host does; use -J",
    "g": "-g lets other hosts use local forwards; write the profile with public = true instead",
    "s": "a subsystem (-s) is a remote command, not a tunnel",
    "t": "a terminal (-t) is for interactive sessions; a tunnel runs without one",
    "G": "-G prints configuration and opens no tunnel",
    "V": "-V prints the version and opens no tunnel",
    "E": "the log file (-E) is managed by sshwrap",
    "A": "agent forwarding (-A) is not part of a tunnel profile",
    "X": "X11 forwarding (-X) is not part of a tunnel profile",
    "Y": "X11 forwarding (-Y) is not part of a tunnel profile",
}

#: ``-o`` options that have a profile key of their own (lower-case name -> key).
_OPTION_KEYS = {
    "port": "port",
    "user": "user",
    "compression": "compression",
    "serveraliveinterval": "keepalive",
    "stricthostkeychecking": "host_key",
    "identityfile": "identity_file",
    "proxyjump": "jump",
}
#: ``-o`` options sshwrap always sets itself, so a pasted value is dropped.
_OPTIONS_SET_BY_SSHWRAP = frozenset({"exitonforwardfailure", "batchmode", "serveralivecountmax"})

_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})


@dataclass
class _Reading:
    """What has been read so far; ``set`` refuses a key given twice with different values."""

    mapping: dict[str, Any] = field(default_factory=dict)
    forwards: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(message, key=where, file=SOURCE))

    def set(self, where: str, key: str, value: object) -> None:
        if key in self.mapping and self.mapping[key] != value:
            self.fail(where, f"sets {key} to {shown(value)} but it is already "
                      f"{shown(self.mapping[key])}")
            return
        self.mapping[key] = value


def _split_fields(spec: str) -> list[str]:
    """Split a forward spec at ':' while keeping ``[v6]`` fields whole (brackets removed)."""
    fields: list[str] = []
    rest = spec
    while True:
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                raise syntax.SyntaxProblem(f"{shown(spec)}: '[' without a closing ']'")
            fields.append(rest[1:close])
            rest = rest[close + 1 :]
            if not rest:
                return fields
            if not rest.startswith(":"):
                raise syntax.SyntaxProblem(f"{shown(spec)}: expected ':' after ']'")
            rest = rest[1:]
            continue
        head, colon, rest = rest.partition(":")
        fields.append(head)
        if not colon:
            return fields


def _address(host: str, port: str) -> str:
    """``host:port`` as a profile writes it, bracketing IPv6 addresses."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen_value(bind: str | None, port: str) -> object:
    """A profile ``listen``: a bare port stays a number; an empty bind means every address."""
    if bind is None:
        return int(port) if syntax.PORT_RE.fullmatch(port) else port
    return _address(bind or "*", port)


def parse_forward_spec(flag: str, spec: str) -> dict[str, Any]:
    """One ``-L``/``-R``/``-D`` argument as a ``[[forward]]`` table, in every OpenSSH form:

    ``[bind:]port:host:hostport``, ``[bind:]port:socket``, ``socket:host:hostport``,
    ``socket:socket`` and, for ``-D``, ``[bind:]port``. Raises SyntaxProblem.
    """
    kind = {"-L": "local", "-R": "remote", "-D": "dynamic"}[flag]
    fields = _split_fields(spec)
    if any(f == "" for f in fields[1:]):
        raise syntax.SyntaxProblem(f"{shown(spec)} has an empty field")
    if kind == "dynamic":
        if len(fields) == 1:
            return {"type": kind, "listen": _listen_value(None, fields[0])}
        if len(fields) == 2:
            return {"type": kind, "listen": _listen_value(fields[0], fields[1])}
        raise syntax.SyntaxProblem(f"{shown(spec)} is not [bind_address:]port")
    target = _listen_and_target(fields)
    if target is not None:
        return {"type": kind, "listen": target[0], "to": target[1]}
    if kind == "remote" and len(fields) <= 2:
        raise syntax.SyntaxProblem(
            f"{shown(spec)} has no target: a remote SOCKS proxy (-R without host:port) is not "
            "supported; write -R [bind:]port:host:hostport"
        )
    raise syntax.SyntaxProblem(
        f"{shown(spec)} is not [bind_address:]port:host:hostport (or a unix-socket form)"
    )


def _listen_and_target(fields: list[str]) -> tuple[object, str] | None:
    """The (listen, to) of a -L/-R spec's fields, or None when they fit no OpenSSH form."""
    first_is_socket = syntax.is_unix_path(fields[0])
    last_is_socket = syntax.is_unix_path(fields[-1])
    if len(fields) == 4:
        return _listen_value(fields[0], fields[1]), _address(fields[2], fields[3])
    if len(fields) == 3 and first_is_socket:
        return fields[0], _address(fields[1], fields[2])
    if len(fields) == 3 and last_is_socket:
        return _listen_value(fields[0], fields[1]), fields[2]
    if len(fields) == 3:
        return _listen_value(None, fields[0]), _address(fields[1], fields[2])
    if len(fields) == 2 and last_is_socket:
        return (fields[0] if first_is_socket else _listen_value(None, fields[0])), fields[1]
    return None


def _split_option(text: str) -> tuple[str, str] | None:
    """``Key=Value``, ``Key Value`` or ``Key = Value`` as ssh's config reader splits them."""
    text = text.strip()
    cut = next((i for i, ch in enumerate(text) if ch == "=" or ch.isspace()), -1)
    if cut <= 0:
        return None
    value = text[cut:].strip()
    if value.startswith("="):
        value = value[1:].strip()
    return text[:cut], value


def _ascii_lower(text: str) -> str:
    """Lower case for ASCII only: str.lower() maps the Kelvin sign to 'k', which ssh would not."""
    return text.lower() if text.isascii() else text


def _yes_no(value: str) -> bool | None:
    lowered = _ascii_lower(value)
    return True if lowered in _YES else False if lowered in _NO else None


def _host_key_mode(value: str) -> str | None:
    lowered = _ascii_lower(value)
    if lowered in ("yes", "ask"):  # "ask" cannot prompt in a tunnel: it refuses unknown keys
        return "strict"
    if lowered == "accept-new":
        return "accept-new"
    return None


def _number(value: str) -> int | None:
    return int(value) if syntax.PORT_RE.fullmatch(value) else None


def _apply_listed_option(reading: _Reading, where: str, name: str, value: str) -> None:
    """An option without a profile key of its own: only one of the allow-list."""
    try:
        name, value = check_option(name, value)
    except syntax.SyntaxProblem as exc:
        reading.fail(where, str(exc))
        return
    if name in reading.options:
        reading.fail(where, f"{name} is given twice")
        return
    reading.options[name] = value


def _apply_option(reading: _Reading, text: str) -> None:
    where = f"-o {text}"
    split = _split_option(text)
    if split is None:
        reading.fail(where, "expected Key=Value or 'Key Value'")
        return
    name, value = split
    lowered = _ascii_lower(name)
    if lowered in _OPTIONS_SET_BY_SSHWRAP:
        return
    key = _OPTION_KEYS.get(lowered)
    if key is None:
        _apply_listed_option(reading, where, name, value)
        return
    converted: object
    if key in ("port", "keepalive"):
        converted = _number(value)
    elif key == "compression":
        converted = _yes_no(value)
    elif key == "host_key":
        converted = _host_key_mode(value)
        if converted is None:
            reading.fail(where, "sshwrap never turns host key checking off; "
                         "use StrictHostKeyChecking=accept-new or pin the key with host_key")
            return
    elif key == "jump":
        converted = [hop.strip() for hop in value.split(",")]
    else:
        converted = value
    if converted is None:
        reading.fail(where, f"{shown(value)} is not a valid value for {name}")
        return
    reading.set(where, key, converted)


def _apply_destination(reading: _Reading, text: str) -> None:
    """``[user@]host`` or ``ssh://[user@]host[:port]``."""
    where = "destination"
    if text.startswith("ssh://"):
        text = text.removeprefix("ssh://").rstrip("/")
        user, at, host_port = text.rpartition("@")
        try:
            host, port = syntax.split_host_port(host_port)
        except syntax.SyntaxProblem as exc:
            reading.fail(where, str(exc))
            return
        if host is None:
            host = port
        elif _number(port) is None:
            reading.fail(where, f"port {shown(port)} is not a number")
        else:
            reading.set(where, "port", _number(port))
    else:
        user, at, host = text.rpartition("@")
    if at:
        reading.set(where, "user", user)
    reading.set(where, "host", host)


def _apply_flag(reading: _Reading, letter: str, argument: str) -> None:
    """One option that takes an argument."""
    where = f"-{letter} {argument}"
    if letter in "LRD":
        try:
            reading.forwards.append(parse_forward_spec(f"-{letter}", argument))
        except syntax.SyntaxProblem as exc:
            reading.fail(where, str(exc))
    elif letter == "o":
        _apply_option(reading, argument)
    elif letter == "J":
        reading.set(where, "jump", [hop.strip() for hop in argument.split(",")])
    elif letter == "p":
        port = _number(argument)
        if port is None:
            reading.fail(where, f"port {shown(argument)} is not a number")
        else:
            reading.set(where, "port", port)
    elif letter in "liF":
        key = {"l": "user", "i": "identity_file", "F": "ssh_config_file"}[letter]
        reading.set(where, key, argument)
    else:
        reading.fail(f"-{letter}", _REFUSED_FLAGS.get(letter, f"-{letter} is not supported "
                     "in a tunnel profile"))


def _apply_switch(reading: _Reading, letter: str) -> None:
    """One option without an argument."""
    if letter in _NO_EFFECT:
        return
    if letter == "C":
        reading.set("-C", "compression", True)
    elif letter in "46":
        reading.options.setdefault("AddressFamily", "inet" if letter == "4" else "inet6")
    else:
        reading.fail(f"-{letter}", _REFUSED_FLAGS.get(letter, f"-{letter} is not supported "
                     "in a tunnel profile"))


def _read_cluster(reading: _Reading, token: str, rest: list[str]) -> None:
    """``-fNT``, ``-L8080:x:80``, ``-oKey=Value``: a token of option letters; may consume
    the next argument from ``rest``."""
    letters = token[1:]
    for i, letter in enumerate(letters):
        if letter in _TAKES_ARGUMENT:
            argument = letters[i + 1 :]
            if not argument:
                if not rest:
                    reading.fail(f"-{letter}", "needs an argument")
                    return
                argument = rest.pop(0)
            _apply_flag(reading, letter, argument)
            return
        if letter in _NO_ARGUMENT:
            _apply_switch(reading, letter)
        else:
            reading.fail(f"-{letter}", "is not an ssh option")


def parse_ssh_command(argv: Sequence[str]) -> dict[str, Any]:
    """The profile mapping an ``ssh ...`` command line describes; raises InvalidInput listing
    everything it cannot express (a remote command, unknown or unsupported flags, ...).

    The leading program name (``ssh`` or a path to it) is optional. Like ssh, options may
    also follow the destination; ``--`` ends them.
    """
    args = list(argv)
    if args and (args[0] == "ssh" or args[0].endswith("/ssh")):
        args.pop(0)
    reading = _Reading()
    destination: str | None = None
    options_ended = False
    while args:
        arg = args.pop(0)
        if arg == "--" and not options_ended:
            options_ended = True
        elif arg.startswith("-") and len(arg) > 1 and not options_ended:
            _read_cluster(reading, arg, args)
        elif destination is None:
            destination = arg
            _apply_destination(reading, arg)
        else:
            command = " ".join([arg, *args])
            reading.fail("command", f"a remote command ({shown(command)}) is not a tunnel; "
                         "sshwrap runs ssh with -N")
            break
    if destination is None:
        reading.fail("destination", "no destination host given")
    if reading.problems:
        raise InvalidInput(reading.problems)
    mapping = dict(reading.mapping)
    if reading.options:
        mapping["options"] = dict(reading.options)
    mapping["forward"] = reading.forwards
    return mapping
