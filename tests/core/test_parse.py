"""parse_profile: every problem reported at once, with file and key path."""

from __future__ import annotations

from typing import Any

import pytest

from sshwrap.core.model import (
    AuthMethod,
    Client,
    ForwardType,
    Hop,
    HostKeyMode,
    Probe,
    RestartPolicy,
    TcpAddress,
    UnixAddress,
)
from sshwrap.core.parse import parse_profile
from sshwrap.core.unparse import profile_to_mapping
from sshwrap.errors import InvalidInput

FP = "SHA256:" + "A" * 43


def _ok(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"host": "gateway",
                            "forward": [{"type": "local", "listen": 3307, "to": "db:3306"}]}
    data.update(extra)
    return data


def _problems(data: dict[str, Any], name: str = "p") -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        parse_profile(name, data, source="/x/p.toml")
    assert all(p.file == "/x/p.toml" for p in caught.value.problems)
    return {p.key: p.message for p in caught.value.problems}


def test_full_profile_parses() -> None:
    profile = parse_profile("full", _ok(
        user="alice", port=2222, identity_file="~/.ssh/id_ed25519", description="d",
        tags=["a", "b"], jump=["u@j1:2200", "j2"], client="ssh", compression=True,
        keepalive=0, restart="always", host_key=FP, share_connection=True,
        options={"ConnectTimeout": 5, "Ciphers": "aes256-gcm@openssh.com", "TCPKeepAlive": True},
        forward=[
            {"type": "local", "listen": "127.0.0.1:3307", "to": "db:3306", "probe": "banner"},
            {"type": "remote", "listen": 9999, "to": "localhost:8888"},
            {"type": "dynamic", "listen": "[::1]:1080", "probe": "socks"},
            {"type": "local", "listen": "/tmp/a.sock", "to": "/run/b.sock"},
            {"type": "local", "listen": "0.0.0.0:8080", "to": "[fe80::1]:80", "public": True},
        ],
    ))
    assert profile.jump == (Hop("j1", "u", 2200), Hop("j2"))
    assert profile.host_key.mode is HostKeyMode.PINNED and profile.host_key.fingerprint == FP
    assert profile.restart is RestartPolicy.ALWAYS and profile.client is Client.SSH
    assert profile.keepalive == 0 and profile.effective_keepalive == 0
    assert profile.options == (("ConnectTimeout", "5"), ("Ciphers", "aes256-gcm@openssh.com"),
                               ("TCPKeepAlive", "yes"))
    assert profile.option("connecttimeout") == "5"
    fwd = profile.forwards
    assert fwd[0].listen == TcpAddress("127.0.0.1", 3307) and fwd[0].probe is Probe.BANNER
    assert fwd[1].type is ForwardType.REMOTE and fwd[1].listen == TcpAddress(None, 9999)
    assert fwd[2].listen == TcpAddress("::1", 1080) and fwd[2].to is None
    assert fwd[3].listen == UnixAddress("/tmp/a.sock") and fwd[3].to == UnixAddress("/run/b.sock")
    assert fwd[4].public and fwd[4].to == TcpAddress("fe80::1", 80)


def test_mapping_round_trips() -> None:
    profile = parse_profile("rt", _ok(user="u", jump=["[::1]:22", "::2"], keepalive=9,
                                      host_key="accept-new", auth="password",
                                      password_env="DB_PASS"))  # noqa: S106 - a variable name
    again = parse_profile("rt", profile_to_mapping(profile))
    assert again == profile
    assert profile.auth is AuthMethod.PASSWORD


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems({
        "hots": "x", "user": "-root", "port": 70000, "identity_file": "a b",
        "ssh_config_file": 3, "description": "a\nb", "compression": "yes", "keepalive": 4000,
        "tags": ["ok", "bad tag"], "jump": ["h:1:2", 5], "client": "putty", "restart": "maybe",
        "host_key": "no", "auth": "key", "password_env": "hunter 2", "password": "x",
        "share_connection": 1, "options": {"ProxyCommand": "nc", "Bad-Name": "1",
                                           "Ciphers": "a b", "ciphers": "c"},
        "forward": [
            {"type": "local", "listen": 70000, "to": "db"},
            {"type": "sideways", "listen": 1},
            {"listen": 1},
            {"type": "dynamic", "listen": 1080, "to": "x:1", "probe": "http"},
            {"type": "local", "listen": "0.0.0.0:80", "to": "x:1", "probe": "socks"},
            {"type": "local", "listen": "/tmp/s.sock", "to": "x:1", "public": "yes"},
            {"type": "remote", "listen": 5, "color": "red"},
            "not a table",
        ],
    }, name="bad name!")
    assert problems == {
        "name": problems["name"],
        "host": "is required: the tunnel host (name, address or ssh config alias)",
        "hots": "unknown key (did you mean 'host'?)",
        "password": "passwords are never stored in profiles; "
                    "name an environment variable with password_env",
        "user": "user '-root' starts with '-' (it would be read as an option)",
        "port": "port 70000 is outside 1-65535",
        "identity_file": problems["identity_file"],
        "ssh_config_file": "must be a string, not int",
        "description": "may not hold newlines, control or invisible format characters",
        "compression": "must be true or false, not str",
        "share_connection": "must be true or false, not int",
        "keepalive": "4000 is outside 0-3600 seconds (0 turns keep-alive off)",
        "tags[1]": "tag 'bad tag' may hold only ASCII letters, digits, '.', '-', '_' "
                   "(at most 64)",
        "jump[0]": problems["jump[0]"],
        "jump[1]": "must be a string '[user@]host[:port]'",
        "client": "must be one of 'ssh', 'plink', not 'putty'",
        "restart": "must be one of 'no', 'on-failure', 'always', not 'maybe'",
        "host_key": problems["host_key"],
        "password_env": problems["password_env"],
        "options.ProxyCommand": "ProxyCommand is refused: use the 'jump' key",
        "options.Bad-Name": "is not an ssh option name (ASCII letters and digits only)",
        "options.Ciphers": problems["options.Ciphers"],
        "options.ciphers": "is given twice (ssh option names ignore case)",
        "forward[0].listen": "port 70000 is outside 1-65535",
        "forward[0].to": "'db' needs a host, as host:port",
        "forward[1].type": "must be one of 'local', 'remote', 'dynamic', not 'sideways'",
        "forward[2].type": "is required (local, remote or dynamic)",
        "forward[3].to": "a dynamic (SOCKS) forward has no 'to': the client picks it",
        "forward[3].probe": "a dynamic forward is probed with 'socks' or 'tcp'",
        "forward[4].probe": "'socks' probes only a dynamic forward",
        "forward[4].listen": "0.0.0.0:80 listens beyond loopback; set public = true on this "
                             "forward if that is really wanted",
        "forward[5].public": "must be true or false, not str",
        "forward[6].color": "unknown key",
        "forward[6].to": "is required for a local or remote forward",
        "forward[7]": "must be a table ([[forward]])",
    }
    assert "must be letters, digits" in problems["name"]
    assert "holds a character" in problems["identity_file"]
    assert "'h:1:2'" in problems["jump[0]"]
    assert "pinned 'SHA256:...'" in problems["host_key"]
    assert "never the password itself" in problems["password_env"]
    assert "'a b'" in problems["options.Ciphers"]


@pytest.mark.parametrize(("data", "key", "fragment"), [
    ({"forward": []}, "forward", "at least one [[forward]]"),
    ({"forward": {"type": "local"}}, "forward", "array of tables"),
    ({"forward": [{"type": "local", "listen": 1, "to": "a:1"},
                  {"type": "local", "listen": "127.0.0.1:1", "to": "b:1"}]},
     "forward[1].listen", "already used by forward[0]"),
    ({"forward": [{"type": "local", "to": "a:1"}]}, "forward[0].listen", "is required"),
    ({"forward": [{"type": "local", "listen": "/tmp/x", "to": "a:1", "public": True}]},
     "forward[0].public", "no public side"),
    ({"forward": [{"type": "local", "listen": "1:2:3", "to": "a:1"}]},
     "forward[0].listen", "IPv6 address in brackets"),
    ({"forward": [{"type": "local", "listen": True, "to": "a:1"}]},
     "forward[0].listen", "port number or a string"),
    ({"forward": [{"type": "local", "listen": 1, "to": 5}]}, "forward[0].to", "must be a string"),
    ({"auth": "password", "identity_file": "k"}, "auth", "choose one"),
    ({"jump": 5}, "jump", "must be a list"),
    ({"tags": "x"}, "tags", "list of strings"),
    ({"options": ["x"]}, "options", "must be a table"),
    ({"options": {"Ciphers": [1]}}, "options.Ciphers", "takes a string, not list"),
    ({"options": {"LocalForward": "1 a:1"}}, "options.LocalForward", "[[forward]]"),
    ({"options": {"XAuthLocation": "/bin/sh"}}, "options.XAuthLocation", "runs a command"),
    ({"options": {"Include": "/etc/x"}}, "options.Include", "config block keyword"),
    ({"options": {"BatchMode": "no"}}, "options.BatchMode", "decides when ssh may prompt"),
    ({"host": 5}, "host", "must be a string"),
    ({"host": "a b"}, "host", "may hold only"),
    ({"host": "1:2:zz"}, "host", "not a valid IPv6"),
    ({"description": "x" * 201}, "description", "is 201 characters long; at most 200"),
    ({"description": "evil\u202eexe.txt"}, "description", "invisible format"),
    ({"keepalive": True}, "keepalive", "must be a number"),
    ({"jump": ["a", "gateway:22"]}, "jump[1]", "jump host loop"),
])
def test_single_problem(data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_profile("p", _ok(**data), source="p.toml")
    found = [(p.key, p.message) for p in caught.value.problems]
    assert any(k == key and fragment in m for k, m in found), found
    assert str(caught.value.problems[0]).startswith("p.toml: ")


def test_probes_of_services_that_wait_for_the_client() -> None:
    """postgresql, redis, memcached and tls name the far end's protocol; not a SOCKS proxy's."""
    profile = parse_profile("svc", {"host": "gw", "forward": [
        {"type": "local", "listen": 5433, "to": "db:5432", "probe": "postgresql"},
        {"type": "remote", "listen": 6380, "to": "localhost:6379", "probe": "redis"},
        {"type": "local", "listen": 11212, "to": "cache:11211", "probe": "memcached"},
        {"type": "local", "listen": 8443, "to": "web:443", "probe": "tls"},
    ]})
    assert [f.probe for f in profile.forwards] == [Probe.POSTGRESQL, Probe.REDIS,
                                                     Probe.MEMCACHED, Probe.TLS]
    problems = _problems({"host": "gw", "forward": [
        {"type": "dynamic", "listen": 1080, "probe": "tls"},
        {"type": "local", "listen": 3307, "to": "db:3306", "probe": "mysql"}]})
    assert problems["forward[0].probe"] == "a dynamic forward is probed with 'socks' or 'tcp'"
    assert "'postgresql', 'redis', 'memcached', 'tls', not 'mysql'" in problems["forward[1].probe"]
