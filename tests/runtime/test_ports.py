"""``ports``: tunnels' sockets marked, and a squatter on the other address family flagged."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.runtime.client.launch import spawn, stop_group
from sshwrap.runtime.system.listeners import Listener
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.ports import build_report, list_ports
from sshwrap.runtime.system.sockets import ProcessInfo
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord, write_record
from sshwrap.sandbox import BannerServer, Sshd, free_port


def _wait_listening(host: str, port: int, proc_pid: int, log: Path) -> None:
    for _ in range(300):
        with contextlib.suppress(OSError), socket.create_connection((host, port), 1):
            return
        try:
            os.kill(proc_pid, 0)
        except ProcessLookupError:
            pytest.fail(f"ssh exited: {log.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"ssh never listened on {host}:{port}: {log.read_text()}")


@contextlib.contextmanager
def v6_only_tunnel(sshd: Sshd, paths: StatePaths, name: str, port: int,
                   target: BannerServer) -> Iterator[int]:
    """A real ``ssh -L [::1]:PORT:...`` started and recorded as sshwrap's ``up`` does."""
    paths.ensure()
    log = paths.log(name)
    argv = ["ssh", "-N", "-F", str(sshd.client.ssh_config), "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes", "-p", str(sshd.port), "-l", sshd.user,
            "-L", f"[::1]:{port}:{target.host}:{target.port}", "-E", str(log), "--", "127.0.0.1"]
    launched = spawn(name, argv, log)
    try:
        _wait_listening("::1", port, launched.pid, log)
        write_record(paths, TunnelRecord(
            name=name, pid=launched.pid, create_time=launched.create_time,
            argv=launched.argv, profile_hash="test", client="ssh", started_at=time.time(),
            forwards=(ExpectedForward("local", f"[::1]:{port}", target.host, "::1", port),),
            log_path=str(log), log_offset=launched.log_offset))
        yield launched.pid
    finally:
        stop_group(launched.pid)
        launched.popen.wait(5)


@pytest.mark.sshd
def test_squatter_on_the_other_family_is_flagged(sshd: Sshd, state_dir: Path,
                                                 banner_server: BannerServer) -> None:
    paths = StatePaths(state_dir)
    port = free_port()
    with socket.create_server(("127.0.0.1", port)), \
            v6_only_tunnel(sshd, paths, "sq", port, banner_server) as tunnel_pid:
        report = list_ports(paths, [port])
        by_family = {e.family: e for e in report.entries}
        assert set(by_family) == {"ipv4", "ipv6"}
        assert by_family["ipv6"].tunnel == "sq"
        assert by_family["ipv6"].pid == tunnel_pid
        assert by_family["ipv6"].program == "ssh"
        assert by_family["ipv4"].tunnel is None
        assert by_family["ipv4"].pid == os.getpid()
        assert by_family["ipv4"].squatter and by_family["ipv6"].squatter
        assert len(report.warnings) == 1
        assert f"port {port}" in report.warnings[0] and "tunnel sq" in report.warnings[0]

        out = subprocess.run([sys.executable, "-m", "sshwrap", "ports", str(port), "--json"],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert {s["listen"] for s in data["sockets"]} == {f"127.0.0.1:{port}", f"[::1]:{port}"}
        assert all(s["squatter"] for s in data["sockets"])
        text = subprocess.run([sys.executable, "-m", "sshwrap", "ports", str(port)],
                              capture_output=True, text=True, check=True).stdout
        assert "tunnel sq SQUATTER?" in text
        assert "warning: port" in text


@pytest.mark.sshd
def test_a_dead_tunnels_record_marks_nothing(sshd: Sshd, state_dir: Path,
                                             banner_server: BannerServer) -> None:
    paths = StatePaths(state_dir)
    port = free_port()
    with v6_only_tunnel(sshd, paths, "gone", port, banner_server):
        pass
    report = list_ports(paths, [port])
    assert all(e.tunnel is None for e in report.entries)


def _listener(family: str, port: int, pid: int) -> Listener:
    return Listener(family, "127.0.0.1" if family == "ipv4" else "::1", port, pid)


def test_a_tunnel_on_both_families_is_not_a_squatter() -> None:
    listeners = [_listener("ipv4", 3307, 10), _listener("ipv6", 3307, 10),
                 _listener("ipv4", 80, 20), Listener("unix", "/run/other.sock", None, 20),
                 Listener("unix", "/tmp/tunnel.sock", None, 10)]
    processes = {10: ProcessInfo(10, "ssh", ("ssh", "-N")), 20: ProcessInfo(20, "nginx", ())}
    report = build_report(listeners, {10: "db"}, processes)
    assert report.warnings == ()
    assert not any(e.squatter for e in report.entries)
    assert [e.listen for e in report.entries if e.family == "unix"] == ["/tmp/tunnel.sock"]
    assert {e.listen: e.tunnel for e in report.entries}["127.0.0.1:80"] is None
    only = build_report(listeners, {10: "db"}, processes, [80])
    assert [e.listen for e in only.entries] == ["127.0.0.1:80"]


def test_bad_port_argument_is_bad_input() -> None:
    out = subprocess.run([sys.executable, "-m", "sshwrap", "ports", "70000"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "70000" in out.stderr
