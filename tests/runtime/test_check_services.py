"""``check`` through a real tunnel to real services that wait for the client: each named by its
own protocol, healthy, stopped (ssh's "open failed" is the evidence) and started again."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import Sshd, free_port
from tests.runtime import services
from tests.runtime.test_check import _cli, _cli_check, _steps, _up, _write_profile

pytestmark = pytest.mark.sshd


@contextlib.contextmanager
def _all_services(root: Path, host: str) -> Iterator[list[services.Service]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(services.postgresql(host, 5432)),
               stack.enter_context(services.postgresql(host, 5433, tls=True)),
               stack.enter_context(services.redis(root, host, 6379)),
               stack.enter_context(services.memcached(root, host, 11211)),
               stack.enter_context(services.nginx(root / "nginx", host, 80, 443))]


#: (to's port, probe, what check says of the healthy service). A banner probe met with silence
#: asks in the protocol of a well-known port; elsewhere the service is only connected.
_EXPECTED = [
    (5432, "banner", r"PostgreSQL \(TLS off\)"),
    (5433, "postgresql", r"PostgreSQL, TLS 1\.3 \(CN=db\.probe\.test, O=sshwrap tests, "
                         r"self-signed\)"),
    (5433, "banner", r"connected; the service did not speak first"),
    (6379, "banner", r"Redis 7\.\d+\.\d+"),
    (6379, "redis", r"Redis 7\.\d+\.\d+"),
    (11211, "banner", r"memcached 1\.\d+\.\d+"),
    (11211, "memcached", r"memcached 1\.\d+\.\d+"),
    (80, "banner", r"HTTP/1\.1 200 OK \(nginx/1\.\d+\.\d+\)"),
    (80, "http", r"HTTP/1\.1 200 OK \(nginx/1\.\d+\.\d+\)"),
    (443, "banner", r"TLS 1\.[23] \(CN=db\.probe\.test, O=sshwrap tests, self-signed\)"),
    (443, "tls", r"TLS 1\.[23] \(CN=db\.probe\.test, O=sshwrap tests, self-signed\)"),
]


def test_check_names_real_services_and_blames_only_on_evidence(
        sshd: Sshd, profiles_dir: Path, runtime_paths: StatePaths, tmp_path: Path) -> None:
    host = services.loopback_address()
    listens = [free_port() for _ in _EXPECTED]
    _write_profile(profiles_dir, "svc", sshd, forward=[
        {"type": "local", "listen": listen, "to": f"{host}:{port}", "probe": probe}
        for listen, (port, probe, _) in zip(listens, _EXPECTED, strict=True)])
    names = [f"far end of local {listen} -> {host}:{port} ({probe})"
             for listen, (port, probe, _) in zip(listens, _EXPECTED, strict=True)]
    with _all_services(tmp_path, host) as running:
        _up("svc", profiles_dir)
        code, report = _cli_check("svc", profiles_dir)
        steps = _steps(report)
        for name, (_, _, shown) in zip(names, _EXPECTED, strict=True):
            assert steps[name]["status"] == "pass", steps[name]
            assert re.fullmatch(shown, steps[name]["detail"]), steps[name]
        assert code == 0, report

        for service in running:
            service.stop()
        code, report = _cli_check("svc", profiles_dir)
        steps = _steps(report)
        assert code == 8
        for name, (port, _, _) in zip(names, _EXPECTED, strict=True):
            far = steps[name]
            assert (far["status"], far["segment"]) == ("fail", "server side"), far
            assert f"cannot reach {host}:{port}" in far["detail"], far
            assert "Connection refused" in far["detail"], far

        for service in running:
            service.start()
        code, report = _cli_check("svc", profiles_dir)
        steps = _steps(report)
        assert code == 0, report
        for name, (_, _, shown) in zip(names, _EXPECTED, strict=True):
            assert re.fullmatch(shown, steps[name]["detail"]), steps[name]
        assert _cli("down", "svc").returncode == 0
        # What the probes left in the servers' own logs: no error, no broken handshake.
        for service in running:
            text = service.log.read_text(errors="replace")
            for word in ("ERROR", "FATAL", "invalid", "[error]", "[crit]", "Protocol error"):
                assert word not in text, f"{service.name}: {word!r} in its log:\n{text}"
    access = (tmp_path / "nginx" / "access.log").read_text()
    assert access.count('"HEAD / HTTP/1.1" 200') == 4 and " 400 " not in access


@contextlib.contextmanager
def _listener(close_at_once: bool) -> Iterator[int]:
    """Accepts every connection: holds it open without a word, or closes it at once."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                if close_at_once:
                    conn.close()
                else:
                    held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
        for conn in held:
            conn.close()
        thread.join(5)


def test_a_service_that_does_not_speak_first_passes_and_one_that_hangs_up_is_not_unreachable(
        sshd: Sshd, profiles_dir: Path, runtime_paths: StatePaths) -> None:
    quiet_listen, closing_listen = free_port(), free_port()
    with _listener(close_at_once=False) as quiet, _listener(close_at_once=True) as closing:
        _write_profile(profiles_dir, "quiet", sshd, forward=[
            {"type": "local", "listen": quiet_listen, "to": f"127.0.0.1:{quiet}",
             "probe": "banner"},
            {"type": "local", "listen": closing_listen, "to": f"127.0.0.1:{closing}",
             "probe": "banner"}])
        _up("quiet", profiles_dir)
        code, report = _cli_check("quiet", profiles_dir)
        steps = _steps(report)
        assert code == 8
        far = steps[f"far end of local {quiet_listen} -> 127.0.0.1:{quiet} (banner)"]
        assert (far["status"], far["detail"]) == (
            "pass", "connected; the service did not speak first")
        hung_up = steps[f"far end of local {closing_listen} -> 127.0.0.1:{closing} (banner)"]
        assert (hung_up["status"], hung_up["segment"]) == ("fail", "server side")
        assert "closed without a greeting" in hung_up["detail"]
        assert "not reachable" not in hung_up["detail"] + hung_up["hint"]
        assert "ssh opened the channel" in hung_up["hint"]
        assert _cli("down", "quiet").returncode == 0
