"""End to end: compile a profile aimed at the sandbox sshd, run the real client, push bytes."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import Profile
from sshwrap.core.parse import parse_profile
from sshwrap.sandbox import BannerServer, Sshd, free_port

pytestmark = pytest.mark.sshd
FACTS = HostFacts(ipv6_loopback=False)
READY_WITHIN = 20.0  # seconds a client gets to open its listener


def _wait_for_listener(proc: subprocess.Popen[bytes], port: int) -> None:
    """Until the forward accepts, the client dies, or the deadline passes."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"client exited with {proc.returncode} before listening:\n{output}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listened on 127.0.0.1:{port} within {READY_WITHIN} s")


@contextlib.contextmanager
def _running(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _exchange(port: int, banner: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        received = b""
        while not received.endswith(b"\n"):
            chunk = conn.recv(4096)
            assert chunk, "the forward closed before the banner arrived"
            received += chunk
        assert received == banner
        payload = b"sshwrap end-to-end \x00\xff" * 100
        conn.sendall(payload)
        echoed = b""
        while len(echoed) < len(payload):
            chunk = conn.recv(65536)
            assert chunk, "the forward closed while echoing"
            echoed += chunk
        assert echoed == payload


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _profile(sshd: Sshd, listen: int, target: int, **extra: object) -> Profile:
    data: dict[str, object] = {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "forward": [{"type": "local", "listen": f"127.0.0.1:{listen}",
                     "to": f"127.0.0.1:{target}", "probe": "banner"}],
    }
    data.update(extra)
    return parse_profile("e2e", data)


def test_ssh_forward_carries_bytes(sshd: Sshd, banner_server: BannerServer) -> None:
    listen = free_port()
    profile = _profile(sshd, listen, banner_server.port,
                       ssh_config_file=str(sshd.client.ssh_config))
    argv = compile_ssh(profile, FACTS, spec=LaunchSpec(verbose=False))
    with _running(argv) as proc:
        _wait_for_listener(proc, listen)
        _exchange(listen, banner_server.banner)
        assert proc.poll() is None
    assert _port_is_free(listen)


@pytest.fixture
def putty_key(sshd: Sshd, tmp_path: Path) -> Path:
    if shutil.which("plink") is None or shutil.which("puttygen") is None:
        pytest.skip("plink/puttygen are not installed (apt-get install putty-tools)")
    ppk = tmp_path / "client.ppk"
    done = subprocess.run(["puttygen", str(sshd.client.key), "-O", "private", "-o", str(ppk)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"puttygen cannot convert the sandbox key: {done.stderr.strip()}")
    return ppk


def _fingerprint(public_key: Path) -> str:
    done = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True,
                          text=True, check=True)
    return done.stdout.split()[1]


@pytest.mark.plink
def test_plink_forward_carries_bytes(
    sshd: Sshd, banner_server: BannerServer, putty_key: Path
) -> None:
    listen = free_port()
    profile = _profile(sshd, listen, banner_server.port, client="plink",
                       identity_file=str(putty_key),
                       host_key=_fingerprint(sshd.host_key.with_suffix(".pub")))
    argv = compile_plink(profile, FACTS)
    assert argv.count("-L") == 1
    with _running(argv) as proc:
        _wait_for_listener(proc, listen)
        _exchange(listen, banner_server.banner)
        assert proc.poll() is None
    assert _port_is_free(listen)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.plink
def test_plink_one_loopback_flag_serves_both_families(
    sshd: Sshd, banner_server: BannerServer, putty_key: Path
) -> None:
    # plink opens a loopback listen on 127.0.0.1 and [::1] at once, so one -L must cover
    # both; a second [::1] flag would collide with plink's own listener.
    if not _has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    listen = free_port()
    profile = parse_profile("e2e", {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "client": "plink",
        "identity_file": str(putty_key),
        "host_key": _fingerprint(sshd.host_key.with_suffix(".pub")),
        "forward": [{"type": "local", "listen": listen,
                     "to": f"127.0.0.1:{banner_server.port}"}],
    })
    argv = compile_plink(profile, HostFacts(ipv6_loopback=True))
    assert argv[argv.index("-L") + 1] == f"127.0.0.1:{listen}:127.0.0.1:{banner_server.port}"
    with _running(argv) as proc:
        _wait_for_listener(proc, listen)
        _exchange(listen, banner_server.banner)
        with socket.create_connection(("::1", listen), timeout=10) as conn:
            assert conn.recv(4096) == banner_server.banner
    assert _port_is_free(listen)
