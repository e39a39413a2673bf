"""Helpers of the runtime tests: push bytes through forwards, wait for state to change."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import TunnelRecord

ProfileWriter = Callable[..., Path]

BANNER = b"220 sshwrap-demo ready\r\n"
ECHO = b"ping through the tunnel\n"
#: Generous bound for a state change to show up; a test waits for the change, not the time.
SETTLE = 60.0


def eventually(condition: Callable[[], object], what: str, timeout: float = SETTLE) -> None:
    """Wait until ``condition`` holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def record_of(paths: StatePaths, name: str) -> TunnelRecord:
    record = state.read_record(paths, name)
    assert record is not None, f"no record of {name}"
    return record


def recv_exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def read_banner_through(host: str, port: int) -> tuple[bytes, bytes]:
    """Connect, read the banner server's greeting, and have it echo a message back."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect((host, port))
        return _banner_and_echo(conn)


def _banner_and_echo(conn: socket.socket) -> tuple[bytes, bytes]:
    banner = b""
    while not banner.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            break
        banner += chunk
    conn.sendall(b"ping through the tunnel\n")
    return banner, recv_exact(conn, len(b"ping through the tunnel\n"))


def socks5_banner(proxy_port: int, target_host: str, target_port: int) -> tuple[bytes, bytes]:
    """A minimal SOCKS5 client (no auth, CONNECT to an IPv4 address) reading the banner."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as conn:
        conn.sendall(b"\x05\x01\x00")
        assert recv_exact(conn, 2) == b"\x05\x00"
        conn.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target_host)
                     + target_port.to_bytes(2, "big"))
        reply = recv_exact(conn, 10)
        assert reply[:2] == b"\x05\x00", f"SOCKS5 CONNECT failed: {reply!r}"
        return _banner_and_echo(conn)


def stop_all_and_check_gone(paths: StatePaths) -> None:
    """Stop every tunnel recorded in ``paths`` and check that none of their clients runs."""
    from sshwrap.usecases.up import down

    records = [state.read_record(paths, n) for n in state.recorded_names(paths)]
    down(all_tunnels=True, paths=paths)
    for record in records:
        if record is not None:
            assert state.live_process(record) is None, f"{record.name} still runs"


def assert_failure_kept(paths: StatePaths, name: str, code: int) -> TunnelRecord:
    """The tunnel failed with exit ``code``: its record is kept ``failed`` with the reason,
    the code and the time, and none of its processes runs."""
    record = record_of(paths, name)
    assert record.phase == "failed", record
    assert record.failure_code == code and record.last_failure, record
    assert record.failed_at is not None, record
    assert state.live_process(record) is None and state.live_supervisor(record) is None
    return record
