"""status's live numbers against the real sandbox sshd: the first hop's round-trip time as
``ss -ti`` reads it, and the connections open through each forward as a pool opens and closes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from sshwrap.cli.render import to_text
from sshwrap.errors import ExitCode
from sshwrap.runtime.observe import livenums
from sshwrap.runtime.system import sockdiag
from sshwrap.runtime.system.listeners import socket_fds
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import StatusReport, TunnelState, TunnelStatus, status, up
from tests.runtime.tunnel_helpers import ProfileWriter, eventually, recv_exact

pytestmark = pytest.mark.sshd
#: ``ss -ti``: "rtt:0.075/0.037", the smoothed round-trip time and its variation in ms.
SS_RTT = re.compile(r"\brtt:(?P<rtt>[\d.]+)/(?P<var>[\d.]+)")


def ss_rtt(local: tuple[str, int], remote: tuple[str, int]) -> tuple[float, float]:
    """What ``ss -tin`` prints for the one socket between these two ends."""
    out = subprocess.run(["ss", "-tin", "state", "established", "src",
                          f"{local[0]}:{local[1]}", "dst", f"{remote[0]}:{remote[1]}"],
                         check=True, capture_output=True, text=True).stdout
    found = SS_RTT.findall(out)
    assert len(found) == 1, out
    return float(found[0][0]), float(found[0][1])


def first_hop_socket(pid: int, port: int) -> tuple[str, int]:
    """The local end of the connection ``pid`` holds to the sshd's ``port``."""
    ends = [c.laddr for c in psutil.Process(pid).net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]
    assert len(ends) == 1, ends
    return ends[0].ip, ends[0].port


def row_of(store: ProfileStore, paths: StatePaths, name: str) -> TunnelStatus:
    report = status(store, [name], paths=paths)
    assert report.exit_code is ExitCode.OK, report
    return report.tunnels[0]


def test_rtt_is_the_first_hop_socket_as_ss_reads_it(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, sshd: Sshd,
) -> None:
    write_profile("rtt", [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                           "to": f"127.0.0.1:{banner_server.port}"}])
    assert up(store, ["rtt"], paths=runtime_paths).exit_code is ExitCode.OK

    row = row_of(store, runtime_paths, "rtt")
    assert row.pid is not None and row.rtt_ms is not None and row.rtt_var_ms is not None
    rtt, var = ss_rtt(first_hop_socket(row.pid, sshd.port), ("127.0.0.1", sshd.port))
    # Read a moment apart: a keepalive's answer in between may move the figure a little.
    assert abs(row.rtt_ms - rtt) < 3 and abs(row.rtt_var_ms - var) < 3
    shown = status(store, ["rtt"], paths=runtime_paths).to_json()
    assert isinstance(shown, list) and shown[0]["rtt_ms"] is not None


@pytest.fixture
def pool() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def _open_through(stack: ExitStack, port: int, count: int,
                  banner: bytes) -> list[socket.socket]:
    """``count`` connections through a forward, each greeted from the far end (so the
    tunnel has accepted it and opened its channel)."""
    opened = []
    for _ in range(count):
        conn = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert recv_exact(conn, len(banner)) == banner
        opened.append(conn)
    return opened


def test_open_connections_follow_a_pool_through_local_and_remote_forwards(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, pool: ExitStack,
) -> None:
    local, remote = free_port(), free_port()
    to = f"127.0.0.1:{banner_server.port}"
    write_profile("pool", [{"type": "local", "listen": f"127.0.0.1:{local}", "to": to},
                           {"type": "remote", "listen": remote, "to": to}])
    assert up(store, ["pool"], paths=runtime_paths).exit_code is ExitCode.OK

    def counts() -> tuple[int | None, ...]:
        return tuple(f.open for f in row_of(store, runtime_paths, "pool").forwards)

    # The far-side proof of the remote forward made one connection through it to ``to``:
    # the tunnel closes its end once the proof's channel is gone, a moment after up.
    eventually(lambda: counts() == (0, 0), "the far-side proof's connection closed")
    opened = _open_through(pool, local, 5, banner_server.banner)
    # The local forward's far side (sshd's own connections to the same banner server) is
    # not the client's: the remote forward still counts none.
    assert counts() == (5, 0)
    for conn in opened[:3]:
        conn.close()
    eventually(lambda: counts() == (2, 0), "3 of 5 local connections closed")
    through = _open_through(pool, remote, 3, banner_server.banner)
    assert counts() == (2, 3)
    for conn in opened[3:] + through:
        conn.close()
    eventually(lambda: counts() == (0, 0), "every connection closed")


def test_through_a_jump_host_the_rtt_is_of_the_jump_connection(
    *, store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, sshd: Sshd, tmp_path: Path,
) -> None:
    # The same sshd as jump (127.0.0.1) and tunnel host ("localhost": ssh refuses a loop).
    identity = ClientIdentity(tmp_path / "jumper")
    shutil.copy(sshd.client.key, identity.key)
    shutil.copy(sshd.client.key.with_suffix(".pub"), identity.key.with_suffix(".pub"))
    shutil.copy(sshd.client.known_hosts, identity.known_hosts)
    identity.trust("localhost", sshd.port, sshd.host_public_key)
    write_profile("hop", [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                           "to": f"127.0.0.1:{banner_server.port}"}],
                  host="localhost", ssh_config_file=str(identity.ssh_config),
                  jump=[f"{sshd.user}@127.0.0.1:{sshd.port}"])
    assert up(store, ["hop"], paths=runtime_paths).exit_code is ExitCode.OK

    row = row_of(store, runtime_paths, "hop")
    assert row.pid is not None and row.rtt_ms is not None
    children = psutil.Process(row.pid).children()
    assert len(children) == 1  # ssh -W to the first jump host
    table = livenums.Connections(sockdiag.tcp_connections())
    hop = table.first_hop(row.pid, set())
    assert hop is not None and hop in (socket_fds(children[0].pid) or {})
    assert table.by_inode[hop].remote_port == sshd.port
    rtt, _ = ss_rtt(first_hop_socket(children[0].pid, sshd.port), ("127.0.0.1", sshd.port))
    assert abs(row.rtt_ms - rtt) < 3


def test_the_table_shows_rtt_and_open_connections() -> None:
    from sshwrap.cli.render import runtime as _render  # noqa: F401
    from sshwrap.runtime.observe.results import ForwardStatus

    forwards = (ForwardStatus("local", "127.0.0.1:3307", "db:3306", True, "listening", 4),
                ForwardStatus("remote", "/run/x.sock", "127.0.0.1:80", True, "confirmed", None))
    rows = (TunnelStatus("db", TunnelState.UP, 42, 10.0, 0, True, forwards, rtt_ms=21.37),
            TunnelStatus("web", TunnelState.UP, 43, 10.0, 0, True, (), rtt_ms=0.062),
            TunnelStatus("off", TunnelState.DOWN, None, None, 0, False, ()))
    text = to_text(StatusReport(rows, ExitCode.OK))
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RTT", "RESTARTS", "FORWARDS"]
    assert "21 ms" in lines[1] and "ok local 127.0.0.1:3307 -> db:3306, 4 open" in lines[1]
    assert lines[2].endswith("ok remote /run/x.sock -> 127.0.0.1:80")
    assert "0.1 ms" in lines[3]
    assert lines[4].split()[:5] == ["off", "down", "-", "-", "-"]


def _frames(argv: list[str], count: int, start: str) -> tuple[list[str], int]:
    """The first ``count`` refreshes ``status --watch`` writes to a pipe (each beginning with
    a line that ``start`` recognises), then its exit code after Ctrl-C."""
    with subprocess.Popen([sys.executable, "-m", "sshwrap", "status", "--watch", *argv],
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            while sum(line.startswith(start) for line in lines) <= count:
                line = proc.stdout.readline()
                assert line, f"status --watch ended: {lines}"
                lines.append(line)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.stdout.read()
        return lines[:-1], proc.wait(timeout=60)


def test_watch_is_plain_lines_off_a_terminal_and_json_lines_with_json(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("seen", [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                            "to": f"127.0.0.1:{banner_server.port}"}])
    assert up(store, ["seen"], paths=runtime_paths).exit_code is ExitCode.OK

    lines, code = _frames(["--interval", "0.1"], 2, "NAME")
    assert code == 0
    assert not any("\x1b" in line for line in lines)  # no cursor movement into a pipe
    tables = [line for line in lines if line.startswith("seen ")]
    assert len(tables) == 2 and all(" ms " in row and ", 0 open" in row for row in tables)

    lines, code = _frames(["--interval", "0.1", "--json"], 2, "[")
    assert code == 0 and len(lines) == 2
    for line in lines:
        rows = json.loads(line)
        assert rows[0]["name"] == "seen" and rows[0]["rtt_ms"] is not None
        assert rows[0]["forwards"][0]["open"] == 0


def test_a_python_tunnel_has_its_numbers_too(sshd: Sshd, banner_server: BannerServer) -> None:
    import sshwrap

    keys = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
            "ssh_config_file": str(sshd.client.ssh_config)}
    tunnel = sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(
        listen=0, to=f"127.0.0.1:{banner_server.port}")])
    assert tunnel.status().state is TunnelState.DOWN
    with tunnel as t, ExitStack() as stack:
        _open_through(stack, t.local_port, 2, banner_server.banner)
        row = t.status()
        assert row.state is TunnelState.UP and row.pid == t.pid
        assert row.rtt_ms is not None
        assert [f.open for f in row.forwards if f.listen.startswith("127.0.0.1")] == [2]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_dump_reads_both_ends_inode_and_rtt_as_the_socket_itself_does(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2]) as conn:
            accepted, _ = listener.accept()
            with accepted:
                conn.sendall(b"x")
                assert accepted.recv(1) == b"x"
                inode = os.fstat(conn.fileno()).st_ino
                found = {c.inode: c for c in sockdiag.tcp_connections() or ()}
                # struct tcp_info: tcpi_rtt and tcpi_rttvar (microseconds) at 68
                rtt, var = struct.unpack_from("=II", conn.getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_INFO, 104), 68)
                ends = (conn.getsockname()[:2], conn.getpeername()[:2])
    mine = found[inode]
    assert ((mine.local, mine.local_port), (mine.remote, mine.remote_port)) == ends
    assert mine.family == family and mine.rtt_us is not None and mine.rttvar_us is not None
    # The same figures unless an ACK came in between the two reads: a millisecond apart.
    assert abs(mine.rtt_us - rtt) < 1000 and abs(mine.rttvar_us - var) < 1000


def test_the_table_is_read_on_its_own_thread_and_handed_over_whole() -> None:
    import threading

    started, release = threading.Event(), threading.Event()
    found = [sockdiag.TcpConnection(socket.AF_INET, "127.0.0.1", 40000, "127.0.0.1", 22,
                                    7, 1500, 300)]

    def read() -> list[sockdiag.TcpConnection]:
        started.set()
        assert release.wait(10)  # held until the caller has done other work meanwhile
        return found

    table = livenums.TableRead(read)
    assert started.wait(10)  # under way before anybody asks for it
    release.set()
    assert table() is found

    def broken() -> None:
        raise PermissionError("sock_diag refused")

    with pytest.raises(PermissionError):
        livenums.TableRead(broken)()
