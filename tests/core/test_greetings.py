"""Reading what real services answered (bytes recorded from Debian 12's servers), and the names
in a real certificate: pure functions, no network."""

from __future__ import annotations

import base64

import pytest

from sshwrap.core.certs import certificate_names, describe_certificate
from sshwrap.core.greetings import (
    PORT_PROTOCOLS,
    POSTGRES_SSL_REQUEST,
    REDIS_HELLO,
    first_message,
    parse_answer,
)
from sshwrap.core.model import Probe

#: Redis 7.0.15 (Debian 12) answering HELLO 2 without a password.
REDIS_HELLO_ANSWER = (
    b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2"
    b"\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
    b"$7\r\nmodules\r\n*0\r\n")
#: ... and with requirepass set.
REDIS_NOAUTH = (b"-NOAUTH HELLO must be called with the client already authenticated, otherwise "
                b"the HELLO AUTH <user> <pass> option can be used to authenticate the client and "
                b"select the RESP protocol version at the same time\r\n")
#: nginx 1.22.1 answering the probe's HEAD request.
NGINX_HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 21:20:37 GMT\r\n"
              b"Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\n")
#: A certificate made by openssl 3.0 (req -x509, P-256) for the tests' TLS servers.
CERTIFICATE = base64.b64decode(
    "MIIBtjCCAVugAwIBAgIUVKc1Knp7KmS7CMHihLZmKGDcxhUwCgYIKoZIzj0EAwIwMDEWMBQGA1UEAwwNZGIucHJvYmUu"
    "dGVzdDEWMBQGA1UECgwNc3Nod3JhcCB0ZXN0czAeFw0yNjEyMDcyMTExNDdaFw0zNjEyMDQyMTExNDdaMDAxFjAUBgNV"
    "BAMMDWRiLnByb2JlLnRlc3QxFjAUBgNVBAoMDXNzaHdyYXAgdGVzdHMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATg"
    "KUzDDnteKHw7BAyx8f+hfurvrXFRabCPzqE02Efpljc7Dd7I8O4J5nJos6wbiPsC4R0DXdUNlfDFbOy9YMuzo1MwUTAd"
    "BgNVHQ4EFgQUktT/WngsxGaDuDE8loQBYP0KxbcwHwYDVR0jBBgwFoAUktT/WngsxGaDuDE8loQBYP0KxbcwDwYDVR0T"
    "AQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAk36WRcgvaJirE8rHf98Ef3zRSb1hPd1hhAoPKbsdePACIQDVJioS"
    "dwu/8yOSY6m2+Xk2wxjLLsFP7ugrmPkBbCoSNw==")


@pytest.mark.parametrize(("probe", "data", "shown"), [
    (Probe.POSTGRESQL, b"N", "PostgreSQL (TLS off)"),
    (Probe.POSTGRESQL, b"S", "PostgreSQL, offers TLS"),
    (Probe.REDIS, REDIS_HELLO_ANSWER, "Redis 7.0.15"),
    (Probe.REDIS, REDIS_HELLO_ANSWER.replace(b"$5\r\nredis", b"$6\r\nvalkey"), "Valkey 7.0.15"),
    (Probe.REDIS, REDIS_NOAUTH, "Redis (needs a login to say its version)"),
    (Probe.REDIS, b"-ERR unknown command 'HELLO'\r\n", "Redis (before 6: no HELLO)"),
    (Probe.MEMCACHED, b"VERSION 1.6.18\r\n", "memcached 1.6.18"),
    (Probe.HTTP, NGINX_HEAD, "HTTP/1.1 200 OK (nginx/1.22.1)"),
    (Probe.HTTP, b"HTTP/1.0 204 No Content\r\n\r\n", "HTTP/1.0 204 No Content"),
])
def test_answers_name_the_product(probe: Probe, data: bytes, shown: str) -> None:
    answer = parse_answer(probe, data)
    assert answer is not None and answer.known
    assert answer.text == shown


@pytest.mark.parametrize(("probe", "data"), [
    (Probe.REDIS, REDIS_HELLO_ANSWER), (Probe.REDIS, REDIS_NOAUTH),
    (Probe.MEMCACHED, b"VERSION 1.6.18\r\n"), (Probe.HTTP, NGINX_HEAD),
])
def test_a_partial_answer_waits_for_more(probe: Probe, data: bytes) -> None:
    """Through a tunnel an answer may come in pieces: no verdict on any cut of it."""
    for cut in range(len(data)):
        assert parse_answer(probe, data[:cut]) is None, cut
    assert parse_answer(probe, data) is not None


@pytest.mark.parametrize(("probe", "data", "shown"), [
    (Probe.REDIS, b"ERROR\r\n", "ERROR"),
    (Probe.POSTGRESQL, b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2"),
    (Probe.MEMCACHED, b"\x1b[31mred alert, ready\r\n", ".[31mred alert, ready"),
    (Probe.HTTP, b"\x00\x01\x02\xff", "4 bytes of binary data, starting 00 01 02 ff"),
])
def test_another_protocol_is_shown_not_named(probe: Probe, data: bytes, shown: str) -> None:
    answer = parse_answer(probe, data, closed=True)
    assert answer is not None and not answer.known
    assert answer.text == shown


def test_first_messages_are_the_protocols_own() -> None:
    assert first_message(Probe.POSTGRESQL) == POSTGRES_SSL_REQUEST == bytes.fromhex("000000 08"
                                                                                     "04d2162f")
    assert first_message(Probe.REDIS) == REDIS_HELLO
    assert first_message(Probe.MEMCACHED) == b"version\r\n"
    assert first_message(Probe.HTTP, "db.example").startswith(
        b"HEAD / HTTP/1.1\r\nHost: db.example\r\n")
    with pytest.raises(ValueError, match="tls"):
        first_message(Probe.TLS)
    assert PORT_PROTOCOLS[5432] is Probe.POSTGRESQL and 3306 not in PORT_PROTOCOLS


def test_certificate_names() -> None:
    assert certificate_names(CERTIFICATE) == ("CN=db.probe.test, O=sshwrap tests",) * 2
    assert describe_certificate(CERTIFICATE) == "CN=db.probe.test, O=sshwrap tests, self-signed"


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", CERTIFICATE[:100],
                                  b"\x04\x03abc", CERTIFICATE[:-1]])
def test_a_broken_certificate_is_said_so(data: bytes) -> None:
    assert describe_certificate(data) == "a certificate sshwrap cannot read"
