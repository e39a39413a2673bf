"""Lexical checks and the explicit loopback binds."""

from __future__ import annotations

import pytest

from sshwrap.core import syntax
from sshwrap.core.binds import HostFacts, expand_forward, expanded_forwards
from sshwrap.core.model import Forward, ForwardType, Hop, TcpAddress, UnixAddress
from sshwrap.core.options import check_option
from sshwrap.core.parse import parse_profile


@pytest.mark.parametrize("value", ["gateway", "db.internal", "10.0.0.1", "fe80::1", "h_1",
                                   "1e100.net", "db1"])
def test_good_hosts(value: str) -> None:
    assert syntax.check_host(value) == value


@pytest.mark.parametrize(("value", "fragment"), [
    ("", "empty"), ("-oProxyCommand=x", "starts with '-'"), ("a b", "may hold only"),
    ("a;b", "may hold only"), ("%h", "may hold only"), ("h\n", "may hold only"),
    ("1:2:x", "IPv6"), ("caf\u00e9", "may hold only"), ("a#b", "may hold only"),
    ("'h'", "may hold only"),
    # inet_aton shorthands: ssh would connect to 0.0.0.0, 127.0.0.1, ... (found by hypothesis)
    ("0", "shorthand IPv4"), ("127.1", "shorthand IPv4"), ("0x7f000001", "shorthand IPv4"),
    ("2130706433", "shorthand IPv4"), ("010.0.0.1", "shorthand IPv4"),
])
def test_bad_hosts(value: str, fragment: str) -> None:
    with pytest.raises(syntax.SyntaxProblem, match=fragment):
        syntax.check_host(value)


@pytest.mark.parametrize("value", ["~/.ssh/id", "/tmp/x.sock", "./k.ppk", "key", "~"])
def test_good_paths(value: str) -> None:
    assert syntax.check_path(value) == value


@pytest.mark.parametrize("value", ["a b", "/x%h", "~/a~b", "$HOME/k", "a:b", "-i", "/a#b", ""])
def test_bad_paths(value: str) -> None:
    with pytest.raises(syntax.SyntaxProblem):
        syntax.check_path(value)


@pytest.mark.parametrize(("value", "expected"), [
    (22, 22), ("22", 22), (65535, 65535),
])
def test_ports(value: object, expected: int) -> None:
    assert syntax.check_port(value) == expected


@pytest.mark.parametrize("value", [0, 65536, "x", True, 1.5, None])
def test_bad_ports(value: object) -> None:
    with pytest.raises(syntax.SyntaxProblem):
        syntax.check_port(value)


@pytest.mark.parametrize(("text", "hop"), [
    ("j", Hop("j")), ("u@j:2200", Hop("j", "u", 2200)), ("[::1]:22", Hop("::1", None, 22)),
    ("[::1]", Hop("::1")), ("::1", Hop("::1")),
])
def test_hops(text: str, hop: Hop) -> None:
    assert syntax.parse_hop(text) == hop


def test_ipv6_hops_render_in_brackets() -> None:
    assert Hop("::1").render() == "[::1]"
    assert Hop("::1", "u", 2).render() == "u@[::1]:2"


@pytest.mark.parametrize(("value", "address"), [
    (80, TcpAddress(None, 80)), ("localhost:80", TcpAddress("localhost", 80)),
    ("[::1]:80", TcpAddress("::1", 80)), ("*:80", TcpAddress("*", 80)),
    ("/run/x.sock", UnixAddress("/run/x.sock")),
])
def test_listen(value: object, address: object) -> None:
    assert syntax.parse_listen(value) == address


@pytest.mark.parametrize("value", ["[::1", "[::1]80", "1:2:3", "x:y", "/a b"])
def test_bad_listen(value: str) -> None:
    with pytest.raises(syntax.SyntaxProblem):
        syntax.parse_listen(value)


def test_option_values() -> None:
    assert check_option("tcpkeepalive", True) == ("TCPKeepAlive", "yes")
    assert check_option("ConnectTimeout", 5) == ("ConnectTimeout", "5")
    assert check_option("CertificateFile", "~/.ssh/id-cert.pub") == \
        ("CertificateFile", "~/.ssh/id-cert.pub")
    for bad in ("a b", "x\ny", "%h", "'q'", "a#b", "", "aes128-ctr\u200b"):
        with pytest.raises(syntax.SyntaxProblem):
            check_option("Ciphers", bad)
    for name, value in (("ConnectTimeout", "\uff15"), ("AddressFamily", "\u0131net"),
                        ("IdentityAgent", "/tmp/a b"), ("BindInterface", "eth0;x"),
                        ("TCPKeepAlive", "maybe")):
        with pytest.raises(syntax.SyntaxProblem):
            check_option(name, value)


def _local(listen: TcpAddress) -> Forward:
    return Forward(ForwardType.LOCAL, listen, TcpAddress("db", 1))


@pytest.mark.parametrize("host", [None, "localhost", "ip6-localhost"])
def test_loopback_listen_becomes_both_families(host: str | None) -> None:
    forwards = expand_forward(_local(TcpAddress(host, 3307)), HostFacts(ipv6_loopback=True))
    assert [f.listen for f in forwards] == [TcpAddress("127.0.0.1", 3307),
                                           TcpAddress("::1", 3307)]


def test_without_ipv6_only_ipv4_loopback() -> None:
    forwards = expand_forward(_local(TcpAddress(None, 1)), HostFacts(ipv6_loopback=False))
    assert [f.listen for f in forwards] == [TcpAddress("127.0.0.1", 1)]


def test_explicit_and_unix_and_remote_listens() -> None:
    facts = HostFacts()
    explicit = _local(TcpAddress("127.0.0.1", 5))
    assert expand_forward(explicit, facts) == (explicit,)
    unix = Forward(ForwardType.LOCAL, UnixAddress("/tmp/s"), TcpAddress("db", 1))
    assert expand_forward(unix, facts) == (unix,)
    remote = Forward(ForwardType.REMOTE, TcpAddress(None, 9), TcpAddress("localhost", 8))
    assert expand_forward(remote, facts)[0].listen == TcpAddress("localhost", 9)
    dynamic = Forward(ForwardType.DYNAMIC, TcpAddress(None, 1080))
    assert len(expand_forward(dynamic, facts)) == 2


def test_expanded_forwards_keeps_order() -> None:
    profile = parse_profile("p", {"host": "h", "forward": [
        {"type": "local", "listen": 1, "to": "a:1"}, {"type": "remote", "listen": 2, "to": "b:2"}]})
    kinds = [f.type for f in expanded_forwards(profile, HostFacts())]
    assert kinds == [ForwardType.LOCAL, ForwardType.LOCAL, ForwardType.REMOTE]


@pytest.mark.parametrize(("family", "binds"), [
    (None, ["127.0.0.1", "::1"]), ("inet", ["127.0.0.1"]), ("inet6", ["::1"]),
])
def test_address_family_limits_the_loopback_binds(family: str | None, binds: list[str]) -> None:
    data: dict[str, object] = {"host": "gw", "forward": [
        {"type": "local", "listen": 3307, "to": "db:1"}]}
    if family:
        data["options"] = {"addressfamily": family}
    forwards = expanded_forwards(parse_profile("p", data), HostFacts(ipv6_loopback=True))
    assert [f.listen.host for f in forwards if isinstance(f.listen, TcpAddress)] == binds


@pytest.mark.parametrize(("host", "loopback"), [
    (None, True), ("127.0.0.1", True), ("127.255.3.4", True), ("::1", True),
    ("localhost", True), ("ip6-localhost", True), ("127.lan.example", False),
    ("127.0.0.1.nip.io", False), ("::ffff:127.0.0.1", False), ("128.0.0.1", False),
    ("LOCALHOST", False), ("localhost.evil.example", False), ("\uff11\uff12\uff17.0.0.1", False),
])
def test_loopback_is_parsed_never_matched_by_prefix(host: str | None, loopback: bool) -> None:
    assert syntax.is_loopback_host(host) is loopback


@pytest.mark.parametrize("value", [
    "::1%h'$(touch x)'", "fe80::1%eth0;x", "fe80::1%" + "a" * 16, "fe80::1%", "fe80::1%a b",
    "fe80::1%\u0435th0", "\uff11::1",
])
def test_scope_ids_are_interface_names(value: str) -> None:
    with pytest.raises(syntax.SyntaxProblem):
        syntax.check_host(value)


def test_hosts_are_parsed_into_kinds() -> None:
    assert syntax.parse_host("FE80::0:1%eth0.5") == syntax.ParsedHost(
        syntax.HostKind.IPV6, "fe80::1%eth0.5", "eth0.5")
    assert syntax.check_host("fe80::1%0") == "fe80::1"  # index 0 is no scope, as ssh reads it
    assert syntax.check_host("fe80::1%007") == "fe80::1%7"
    assert syntax.parse_host("10.0.0.7").kind is syntax.HostKind.IPV4
    assert syntax.parse_host("my_alias.example").kind is syntax.HostKind.NAME
    for bad in ("a" * 64, "-a.b", "a-.b", "a..b", ".a", ("a." * 127) + "a"):
        with pytest.raises(syntax.SyntaxProblem):
            syntax.check_host(bad)


@pytest.mark.parametrize("port", ["\u00b2", "\uff18\uff10", "\u0668\u0660", "1e3", " 80", "80 ",
                                  "+80"])
def test_ports_are_ascii_digits(port: str) -> None:
    with pytest.raises(syntax.SyntaxProblem):
        syntax.check_port(port)
