"""The parts of network-change recovery: netlink framing, the suspend clock, which connection
cannot survive, and the watcher on a real netlink socket in a namespace of its own."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sshwrap.netlab import can_run
from sshwrap.runtime.supervise import netwatch
from sshwrap.runtime.supervise.netwatch import (
    Change,
    NetWatch,
    change_kinds,
    recheck,
    route_problem,
)


def _message(kind: int, payload: bytes = b"") -> bytes:
    length = netwatch.NLMSG_HEADER.size + len(payload)
    padded = payload + b"\0" * (-length % 4)
    return netwatch.NLMSG_HEADER.pack(length, kind, 0, 1, 0) + padded


def test_netlink_messages_are_framed_and_named_once_each() -> None:
    data = _message(21, b"\1\2\3") + _message(25, b"x" * 8) + _message(21) + _message(3)
    assert change_kinds(data) == ["an address went away", "a route went away"]
    assert change_kinds(_message(20) + _message(24)) == ["an address appeared",
                                                         "a route appeared"]


def test_a_malformed_datagram_stops_the_framing_without_error() -> None:
    broken = struct.pack("=IHHII", 4, 20, 0, 0, 0) + _message(21)
    assert change_kinds(broken) == []
    assert change_kinds(b"\0\1") == []


def test_the_suspend_clock_does_not_dip() -> None:
    assert netwatch.suspended_seconds() >= 0


def test_a_jump_of_the_boot_clock_is_told_as_a_resume() -> None:
    # The machine cannot be suspended in a test: the clock difference is fed instead.
    gaps = iter([5.0, 5.0, 35.0])
    told: list[Change] = []
    done = threading.Event()

    def on_change(change: Change) -> None:
        told.append(change)
        done.set()

    watch = NetWatch(on_change, suspended=lambda: next(gaps, 35.0)).start()
    try:
        assert done.wait(30)
    finally:
        watch.stop()
    assert told[0] == Change("resumed after 30 s of suspend", resumed=True)
    assert len(told) == 1


def test_a_connection_from_a_present_address_survives() -> None:
    assert route_problem("127.0.0.1", "127.0.0.1", 22) is None


def test_a_connection_from_an_absent_address_cannot_survive() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    assert route_problem("192.0.2.7", "127.0.0.1", 22) == "its local address 192.0.2.7 is gone"


def test_client_links_lists_established_connections_of_a_process_tree() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        try:
            links = netwatch.client_links(os.getpid())
        finally:
            client.close()
            accepted.close()
    assert ("127.0.0.1", "127.0.0.1", port) in links


@dataclass
class FakeTunnel:
    """Stands in for a Supervisor (the Restartable protocol): a real pid, recorded drops."""

    pid: int | None
    hop: tuple[str, int] | None = None
    dropped: list[str] = field(default_factory=list)

    def client_pid(self) -> int | None:
        return self.pid

    def first_hop(self) -> tuple[str, int] | None:
        return self.hop

    def drop_connection(self, reason: str) -> None:
        self.dropped.append(reason)


def test_recheck_drops_only_what_cannot_survive() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        alive, starting = FakeTunnel(os.getpid()), FakeTunnel(None)
        # A resume probes the first hop: a closed port on loopback is a dead path.
        with socket.create_server(("127.0.0.1", 0)) as closed:
            dead_port = closed.getsockname()[1]
        dead = FakeTunnel(os.getpid(), hop=("127.0.0.1", dead_port))
        try:
            assert recheck([alive, starting], Change("the network changed")) == []
            dropped = recheck([alive, dead, starting], Change("resumed", resumed=True))
        finally:
            client.close()
            accepted.close()
    assert alive.dropped == starting.dropped == []
    assert dropped == [f"127.0.0.1 port {dead_port} does not answer after the resume"]
    assert dead.dropped == [f"resumed: 127.0.0.1 port {dead_port} does not answer after the "
                            "resume"]


@pytest.mark.netns
def test_the_watcher_tells_an_address_change_in_its_namespace(tmp_path: Path) -> None:
    reason = can_run()
    if reason:
        pytest.skip(reason)
    name = f"sshwrap-nw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # The watcher runs in the namespace (a child process: setns would move this one).
        code = (
            "import sys, threading\n"
            "from sshwrap.runtime.supervise.netwatch import NetWatch\n"
            "seen = threading.Event()\n"
            "def told(change):\n"
            "    print(change.reason, flush=True); seen.set()\n"
            "watch = NetWatch(told).start()\n"
            "print('ready', flush=True)\n"
            "ok = seen.wait(60)\n"
            "watch.stop()\n"
            "sys.exit(0 if ok else 1)\n")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        proc = subprocess.Popen(["ip", "netns", "exec", name, "python3", "-c", code],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.9.9.9/32", "dev", "lo"],
                       check=True)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0
        assert "the network changed: " in out and "an address appeared" in out
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_disabled_watcher_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(netwatch.ENABLE_ENV, "0")
    before = threading.active_count()
    watch = NetWatch(lambda change: None).start()
    assert threading.active_count() == before
    watch.stop()
