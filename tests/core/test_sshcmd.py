"""Reading a pasted ssh command line into a profile mapping."""

from __future__ import annotations

from typing import Any

import pytest

from sshwrap.core.parse import parse_profile
from sshwrap.core.sshcmd import parse_forward_spec, parse_ssh_command
from sshwrap.core.syntax import SyntaxProblem
from sshwrap.errors import InvalidInput


def test_guide_double_tunnel() -> None:
    mapping = parse_ssh_command(
        ["ssh", "-J", "bastion-host", "-L", "7999:git-server:7999", "test-server", "-N"])
    assert mapping == {"jump": ["bastion-host"], "host": "test-server",
                       "forward": [{"type": "local", "listen": 7999, "to": "git-server:7999"}]}


def test_flags_clusters_and_options() -> None:
    mapping = parse_ssh_command([
        "/usr/bin/ssh", "-fNT", "-Cv", "-L8080:x:80", "-p", "2200", "-l", "bob",
        "-i", "~/.ssh/k", "-F", "/etc/cfg", "-oServerAliveInterval=15",
        "-o", "StrictHostKeyChecking accept-new", "-o", "ConnectTimeout = 5",
        "-o", "ExitOnForwardFailure=yes", "-o", "ProxyJump=a,u@b:2", "-4", "-q", "-n", "gw",
    ])
    assert mapping == {
        "compression": True, "port": 2200, "user": "bob", "identity_file": "~/.ssh/k",
        "ssh_config_file": "/etc/cfg", "keepalive": 15, "host_key": "accept-new",
        "jump": ["a", "u@b:2"], "host": "gw",
        "options": {"ConnectTimeout": "5", "AddressFamily": "inet"},
        "forward": [{"type": "local", "listen": 8080, "to": "x:80"}],
    }


def test_options_after_destination_and_uri() -> None:
    mapping = parse_ssh_command(["ssh", "ssh://alice@h:2222", "-D", "1080"])
    assert mapping["user"] == "alice" and mapping["port"] == 2222 and mapping["host"] == "h"
    assert mapping["forward"] == [{"type": "dynamic", "listen": 1080}]


@pytest.mark.parametrize(("flag", "spec", "expected"), [
    ("-L", "8080:web:80", {"listen": 8080, "to": "web:80"}),
    ("-L", "127.0.0.1:8080:web:80", {"listen": "127.0.0.1:8080", "to": "web:80"}),
    ("-L", "[::1]:8080:[fe80::1]:80", {"listen": "[::1]:8080", "to": "[fe80::1]:80"}),
    ("-L", "localhost:8080:web:80", {"listen": "localhost:8080", "to": "web:80"}),
    ("-L", ":8080:web:80", {"listen": "*:8080", "to": "web:80"}),
    ("-L", "*:8080:web:80", {"listen": "*:8080", "to": "web:80"}),
    ("-L", "8080:/run/app.sock", {"listen": 8080, "to": "/run/app.sock"}),
    ("-L", "127.0.0.1:8080:/run/app.sock", {"listen": "127.0.0.1:8080", "to": "/run/app.sock"}),
    ("-L", "/tmp/l.sock:web:80", {"listen": "/tmp/l.sock", "to": "web:80"}),
    ("-L", "/tmp/l.sock:/run/r.sock", {"listen": "/tmp/l.sock", "to": "/run/r.sock"}),
    ("-R", "9999:localhost:8888", {"listen": 9999, "to": "localhost:8888"}),
    ("-R", "0.0.0.0:9999:localhost:8888", {"listen": "0.0.0.0:9999", "to": "localhost:8888"}),
    ("-D", "1080", {"listen": 1080}),
    ("-D", "[::1]:1080", {"listen": "[::1]:1080"}),
])
def test_forward_specs(flag: str, spec: str, expected: dict[str, Any]) -> None:
    kind = {"-L": "local", "-R": "remote", "-D": "dynamic"}[flag]
    assert parse_forward_spec(flag, spec) == {"type": kind, **expected}


@pytest.mark.parametrize(("flag", "spec", "fragment"), [
    ("-R", "8080", "no target"), ("-R", "127.0.0.1:8080", "no target"),
    ("-L", "8080", "is not [bind_address:]port:host:hostport"),
    ("-L", "[::1:8080:x:1", "without a closing"), ("-L", "[::1]8080:x:1", "expected ':'"),
    ("-L", "8080::80", "empty field"), ("-D", "a:b:c", "is not [bind_address:]port"),
    ("-L", "1:2:3:4:5", "is not"),
])
def test_bad_forward_specs(flag: str, spec: str, fragment: str) -> None:
    with pytest.raises(SyntaxProblem) as caught:
        parse_forward_spec(flag, spec)
    assert fragment in str(caught.value)


def _refusals(args: list[str]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        parse_ssh_command(args)
    assert all(p.file == "ssh command line" for p in caught.value.problems)
    return {p.key: p.message for p in caught.value.problems}


def test_everything_wrong_is_reported_at_once() -> None:
    problems = _refusals([
        "ssh", "-w", "0:0", "-M", "-S", "/tmp/c", "-W", "h:1", "-R", "8080", "-Z",
        "-o", "StrictHostKeyChecking=no", "-o", "Port=abc", "-o", "bare", "-p", "x",
        "-g", "-t", "host", "uptime", "-a",
    ])
    assert set(problems) == {"-w", "-M", "-S", "-W", "-R 8080", "-Z",
                             "-o StrictHostKeyChecking=no", "-o Port=abc", "-o bare", "-p x",
                             "-g", "-t", "command"}
    assert "VPN" in problems["-w"]
    assert "never turns host key checking off" in problems["-o StrictHostKeyChecking=no"]
    assert "remote command ('uptime -a')" in problems["command"]
    assert "public = true" in problems["-g"]


@pytest.mark.parametrize(("args", "key", "fragment"), [
    (["ssh"], "destination", "no destination"),
    (["ssh", "-N"], "destination", "no destination"),
    (["ssh", "-L"], "-L", "needs an argument"),
    (["ssh", "-p", "22", "-o", "Port=23", "h"], "-o Port=23", "already 22"),
    (["ssh", "-l", "a", "b@h"], "destination", "already 'a'"),
    (["ssh", "-o", "Ciphers=a", "-o", "ciphers=b", "h"], "-o ciphers=b", "given twice"),
    (["ssh", "ssh://h:x"], "destination", "not a number"),
    (["ssh", "h", "--", "-N"], "command", "remote command"),
])
def test_single_refusal(args: list[str], key: str, fragment: str) -> None:
    problems = _refusals(args)
    assert fragment in problems[key], problems


def test_command_line_values_are_still_validated_by_parse_profile() -> None:
    mapping = parse_ssh_command(["ssh", "-o", "ciphers=aes128-ctr", "-L", "0.0.0.0:80:x:80",
                                 "-l", "-oops", "h"])
    assert mapping["options"] == {"Ciphers": "aes128-ctr"}  # ssh's own spelling
    with pytest.raises(InvalidInput) as caught:
        parse_profile("x", mapping)
    keys = {p.key for p in caught.value.problems}
    assert keys == {"forward[0].listen", "user"}


@pytest.mark.parametrize(("option", "fragment"), [
    ("ProxyCommand=nc", "use the 'jump' key"),
    ("PROXYCOMMAND=nc", "use the 'jump' key"),
    ("NumberOfPasswordPrompts=5", "one attempt"),
    ("userknownhostsfile=/dev/null", "host_key"),
    ("NoHostAuthenticationForLocalhost=yes", "host_key"),
    ("StreamLocalBindUnlink=yes", "never lets ssh remove"),
    ("SendEnv=LANG", "sends something"),
    ("GatewayPorts=yes", "public = true"),
    ("ConnectTimeout=\uff15", "number"),
])
def test_pasted_options_go_through_the_allow_list(option: str, fragment: str) -> None:
    option = option.encode().decode("unicode_escape")
    problems = _refusals(["ssh", "-o", option, "h"])
    assert fragment in problems[f"-o {option}"], problems
