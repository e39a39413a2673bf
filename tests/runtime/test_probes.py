"""Probes against real local services, and SOCKS through a real ``ssh -D`` to the test sshd."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sshwrap.core.model import Probe
from sshwrap.runtime.client.launch import stop_group
from sshwrap.runtime.observe.probes import (
    probe_banner,
    probe_http,
    probe_http_connect,
    probe_socks,
    probe_tcp,
    run_probe,
)
from sshwrap.sandbox import BannerServer, Sshd, free_port


class _Hello(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closing_server() -> Iterator[tuple[str, int]]:
    """Accepts every connection and closes it at once, as ssh does for an unreachable target."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Listens (the kernel completes handshakes) but never sends anything."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield "127.0.0.1", int(listener.getsockname()[1])


def test_tcp_probe_passes_on_a_live_service(banner_server: BannerServer) -> None:
    result = probe_tcp((banner_server.host, banner_server.port))
    assert result.ok, result.detail


def test_tcp_probe_fails_on_a_closed_port() -> None:
    result = probe_tcp(("127.0.0.1", free_port()))
    assert not result.ok
    assert "cannot connect" in result.detail


def test_tcp_probe_fails_when_the_far_end_closes_at_once(closing_server: tuple[str, int]) -> None:
    result = probe_tcp(closing_server)
    assert (result.ok, result.silent) == (False, True)
    assert "closed at once" in result.detail
    # Through a forward, only ssh's log can say the far end is unreachable: the probe does not.
    assert "reachable" not in result.detail


def test_banner_probe_reports_the_greeting(banner_server: BannerServer) -> None:
    result = probe_banner((banner_server.host, banner_server.port))
    assert result.ok
    assert result.detail == "greeting: 220 sshwrap-demo ready"


def test_banner_probe_passes_a_service_that_does_not_speak_first(
        silent_server: tuple[str, int]) -> None:
    result = probe_banner(silent_server, timeout=0.3, wait=0.1)
    assert (result.ok, result.silent) == (True, True)
    assert result.detail == "connected; the service did not speak first"


def test_banner_probe_asks_a_quiet_service_on_a_well_known_port_but_does_not_blame_it(
        silent_server: tuple[str, int]) -> None:
    result = probe_banner(silent_server, timeout=0.3, wait=0.1, port=6379)
    assert (result.ok, result.silent) == (True, True)
    assert result.detail == ("connected; the service did not speak first, and sent nothing "
                             "within 0.3 s on a Redis HELLO")


@pytest.mark.parametrize("probe", [Probe.POSTGRESQL, Probe.REDIS, Probe.MEMCACHED, Probe.TLS])
def test_a_declared_protocol_must_be_answered(silent_server: tuple[str, int],
                                              banner_server: BannerServer, probe: Probe) -> None:
    quiet = run_probe(probe, silent_server, timeout=0.3)
    assert (quiet.ok, quiet.silent) == (False, True)
    assert "sent nothing within 0.3 s" in quiet.detail
    other = run_probe(probe, (banner_server.host, banner_server.port), timeout=1)
    assert not other.ok
    assert "220 sshwrap-demo ready" in other.detail or "TLS handshake" in other.detail


def _mysql_packet(payload: bytes, sequence: int = 0) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


#: The handshake MariaDB 10.11 of Debian 12 sent (recorded): protocol 10, "5.5.5-" version prefix.
MARIADB_HANDSHAKE = bytes.fromhex(
    "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000300000030"
    "553d6e365e592300fef7080200ff81150000000000001d000000415b29585f556d46534f7376006d797371"
    "6c5f6e61746976655f70617373776f726400")


@pytest.mark.parametrize(("greeting", "shown"), [
    (MARIADB_HANDSHAKE, "10.11.19-MariaDB-0+deb12u1"),
    (_mysql_packet(b"\xffj\x04Host '10.0.0.1' is not allowed to connect"),
     "MySQL error 1130: Host '10.0.0.1' is not allowed to connect"),
    (b"SSH-2.0-dropbear_2022.83\r\n", "SSH-2.0-dropbear_2022.83"),
    (b"220 mail.example ESMTP Postfix\r\n", "220 mail.example ESMTP Postfix"),
    (b"* OK [CAPABILITY IMAP4rev1] ready.\r\n", "* OK [CAPABILITY IMAP4rev1] ready."),
    (b"+OK Dovecot ready.\r\n", "+OK Dovecot ready."),
    (b"220 (vsFTPd 3.0.3)\r\n", "220 (vsFTPd 3.0.3)"),
    (b"\x00\x01\x02\xfe\xff\x80binary",
     "12 bytes of binary data, starting 00 01 02 fe ff 80 62 69"),
])
def test_banner_probe_shows_greetings_as_text(greeting: bytes, shown: str) -> None:
    with BannerServer(greeting) as server:
        result = probe_banner((server.host, server.port))
    assert result.ok, result.detail
    assert result.detail == f"greeting: {shown}"


def test_banner_probe_reads_an_sshd_greeting(sshd: Sshd) -> None:
    result = probe_banner(("127.0.0.1", sshd.port))
    assert result.ok
    assert result.detail.startswith("greeting: SSH-2.0-OpenSSH")


def test_http_probe_reports_the_status_line(http_server: tuple[str, int]) -> None:
    result = run_probe(Probe.HTTP, http_server)
    assert result.ok
    assert result.detail.startswith("HTTP/1.0 204")


def test_http_probe_fails_on_a_non_http_service(banner_server: BannerServer) -> None:
    result = probe_http((banner_server.host, banner_server.port))
    assert not result.ok
    assert "not HTTP" in result.detail


def test_unix_socket_endpoint(tmp_path: Path) -> None:
    path = str(tmp_path / "svc.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        assert probe_tcp(path, settle=0.1).ok
    assert not probe_tcp(str(tmp_path / "missing.sock")).ok


@contextlib.contextmanager
def _ssh_dynamic(sshd: Sshd) -> Iterator[int]:
    port = free_port()
    argv = ["ssh", "-N", "-F", str(sshd.client.ssh_config), "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes", "-p", str(sshd.port), "-l", sshd.user,
            "-D", f"127.0.0.1:{port}", "--", "127.0.0.1"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None, "ssh -D exited"
            time.sleep(0.05)
        yield port
    finally:
        stop_group(proc.pid)
        proc.wait(10)


@pytest.mark.sshd
def test_socks_probe_through_a_real_ssh_dynamic_forward(sshd: Sshd,
                                                        banner_server: BannerServer) -> None:
    with _ssh_dynamic(sshd) as port:
        reached = probe_socks(("127.0.0.1", port), (banner_server.host, banner_server.port))
        assert reached.ok, reached.detail
        by_name = run_probe(Probe.SOCKS, ("127.0.0.1", port),
                            socks_target=("localhost", banner_server.port))
        assert by_name.ok, by_name.detail
        refused = probe_socks(("127.0.0.1", port), ("127.0.0.1", free_port()))
        assert not refused.ok


def test_socks_probe_fails_on_a_non_socks_service(banner_server: BannerServer) -> None:
    result = probe_socks((banner_server.host, banner_server.port), ("127.0.0.1", 1))
    assert not result.ok
    assert "not a SOCKS5 proxy" in result.detail


def test_socks_probe_without_target_is_refused(banner_server: BannerServer) -> None:
    assert not run_probe(Probe.SOCKS, (banner_server.host, banner_server.port)).ok


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real tinyproxy (Debian package) on loopback that allows CONNECT to any port."""
    program = shutil.which("tinyproxy")
    if program is None:
        pytest.skip("tinyproxy is not installed (scripts/dev installs it)")
    port = free_port()
    config = tmp_path / "tinyproxy.conf"
    config.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 10\nAllow 127.0.0.1\n"
                      f"LogLevel Info\nLogFile \"{tmp_path / 'tinyproxy.log'}\"\n"
                      f"PidFile \"{tmp_path / 'tinyproxy.pid'}\"\n")
    proc = subprocess.Popen([program, "-d", "-c", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None, "tinyproxy exited"
            time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        stop_group(proc.pid)
        proc.wait(10)


def test_http_probe_with_a_target_asks_a_real_proxy_to_connect(
        tinyproxy: tuple[str, int], banner_server: BannerServer) -> None:
    reached = run_probe(Probe.HTTP, tinyproxy,
                        proxy_target=(banner_server.host, banner_server.port))
    assert reached.ok, reached.detail
    assert reached.detail.startswith(f"CONNECT 127.0.0.1:{banner_server.port} via ")
    assert " 200 " in reached.detail
    refused = probe_http_connect(tinyproxy, ("127.0.0.1", free_port()))
    assert not refused.ok
    assert "CONNECT" in refused.detail
