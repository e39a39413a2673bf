"""Each scenario of the classic tunnel guides, end to end, in a real multi-host network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sshwrap.errors import ExitCode
from sshwrap.netlab import GUIDE_PROFILES, NetLab
from tests.netns.lab_client import Client

pytestmark = pytest.mark.netns


def fetch(lab: NetLab, host: str, url: str, *, proxy: str = "") -> str:
    """An HTTP GET made on ``host`` (optionally through an HTTP proxy), returning the body."""
    code = (
        "import sys, urllib.request as u\n"
        "h = {'http': sys.argv[2]} if sys.argv[2] else {}\n"
        "o = u.build_opener(u.ProxyHandler(h))\n"
        "print(o.open(sys.argv[1], timeout=10).read().decode(), end='')\n"
    )
    result = lab.run(host, ["python3", "-c", code, url, proxy], timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def read_banner(lab: NetLab, host: str, port: int) -> str:
    code = (
        "import socket, sys\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
        "print(s.recv(100).decode().strip())\n"
    )
    result = lab.run(host, ["python3", "-c", code, str(port)], timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def reachable(lab: NetLab, host: str, target: str, port: int) -> bool:
    code = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return lab.run(host, ["python3", "-c", code, target, str(port)]).returncode == 0


def up(you: Client, name: str) -> None:
    result = you.sshwrap("up", name)
    assert result.returncode == 0, result.stderr
    row = you.status(name)
    assert row["state"] == "up"
    assert all(f["healthy"] for f in row["forwards"]), row


def test_local_tunnel_to_database_with_compression(lab: NetLab, you: Client) -> None:
    assert not reachable(lab, "you", "db-server", 3306)  # the firewall the guide works around
    you.write_profile("mysql", GUIDE_PROFILES["mysql"])
    up(you, "mysql")
    assert read_banner(lab, "you", 3307) == "5.7.42-mysql-like"  # `telnet localhost 3307`
    assert "-C" in you.sshwrap("compile", "mysql").stdout.split()


def test_two_forwards_in_one_tunnel(lab: NetLab, you: Client) -> None:
    you.write_profile("vpn", GUIDE_PROFILES["vpn"])
    up(you, "vpn")
    assert "web-server port 80" in fetch(lab, "you", "http://127.0.0.1:8080/some-file.txt")
    assert "web-server port 443" in fetch(lab, "you", "http://127.0.0.1:8443/secure.txt")


def test_socks_proxy_resolves_names_on_the_tunnel_host(lab: NetLab, you: Client) -> None:
    assert lab.run("you", ["getent", "hosts", "intranet"]).returncode != 0
    you.write_profile("socks", GUIDE_PROFILES["socks"])
    up(you, "socks")
    code = (
        "import socket, struct\n"
        "s = socket.create_connection(('127.0.0.1', 1080), timeout=10)\n"
        "s.sendall(b'\\x05\\x01\\x00'); assert s.recv(2) == b'\\x05\\x00'\n"
        "name = b'intranet'\n"
        "s.sendall(b'\\x05\\x01\\x00\\x03' + bytes([len(name)]) + name + struct.pack('>H', 80))\n"
        "reply = s.recv(10); assert reply[1] == 0, reply\n"
        "s.sendall(b'GET /via-socks HTTP/1.0\\r\\nHost: intranet\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while chunk := s.recv(4096):\n"
        "    data += chunk\n"
        "print(data.decode())\n"
    )
    result = lab.run("you", ["python3", "-c", code])
    assert result.returncode == 0, result.stderr
    assert "hello from intranet" in result.stdout


def test_remote_tunnel_reaches_a_service_on_the_client(lab: NetLab, you: Client) -> None:
    assert not reachable(lab, "bastion-host", "you", 8888)  # the client's service is loopback-only
    you.write_profile("share", GUIDE_PROFILES["share"])
    up(you, "share")
    assert "hello from you port 8888" in fetch(lab, "bastion-host", "http://127.0.0.1:8081/x")


def test_double_tunnel_through_two_firewalls(lab: NetLab, you: Client) -> None:
    assert not reachable(lab, "bastion-host", "git-server", 7999)
    you.write_profile("git", GUIDE_PROFILES["git"])
    up(you, "git")
    assert read_banner(lab, "you", 7999) == "SSH-2.0-git-like"


def test_reverse_double_tunnel_gives_beta_a_proxy(lab: NetLab, you: Client) -> None:
    assert not reachable(lab, "beta-server", "you", 8888)
    you.write_profile("beta", GUIDE_PROFILES["beta"])
    up(you, "beta")
    body = fetch(lab, "beta-server", "http://example.invalid/page", proxy="http://127.0.0.1:9999")
    assert "hello from you port 8888" in body
    assert "http://example.invalid/page" in body


def test_target_refusing_is_a_server_side_failure(lab: NetLab, you: Client) -> None:
    you.write_profile("closed", '''
host = "bastion-host"
[[forward]]
type = "local"
listen = 18082
to = "web-server:81"
''')
    up(you, "closed")  # the listener is there: the client side and the gateway are fine
    result = you.sshwrap("check", "closed")
    assert result.returncode == ExitCode.UNHEALTHY, result.stdout + result.stderr
    assert "open failed" in result.stdout or "server side" in result.stdout.lower()


def test_jump_host_that_cannot_reach_the_next_hop(lab: NetLab, you: Client) -> None:
    you.write_profile("nohop", '''
host = "beta-server"
jump = ["bastion-host"]
[[forward]]
type = "local"
listen = 18083
to = "localhost:22"
''')
    result = you.sshwrap("up", "nohop", "--wait", "20")
    assert result.returncode == ExitCode.CONNECTION, result.stderr
    assert "bastion-host" in result.stderr
    assert you.status("nohop")["state"] != "up"


def test_ingress_port_taken(lab: NetLab, you: Client) -> None:
    squatter = subprocess.Popen(
        lab.exec_argv("you", ["python3", "-c", "import socket, time\n"
                              "s = socket.socket(); s.bind(('127.0.0.1', 18084)); s.listen()\n"
                              "print('ok', flush=True); time.sleep(60)"]),
        stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "ok"
        you.write_profile("taken", '''
host = "bastion-host"
[[forward]]
type = "local"
listen = 18084
to = "web-server:80"
''')
        result = you.sshwrap("up", "taken")
        assert result.returncode == ExitCode.FORWARDING, result.stderr
        assert "18084" in result.stderr
        assert "python" in result.stderr  # the holder is named
        assert you.status("taken")["state"] != "up"
    finally:
        squatter.kill()
        squatter.wait()


def test_unknown_host_key_of_a_hop(lab: NetLab, you: Client, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(lab.client.ssh_config.read_text().replace(
        str(lab.client.known_hosts), str(empty)))
    you.write_profile("stranger", f'''
host = "test-server"
jump = ["bastion-host"]
ssh_config_file = "{config}"
[[forward]]
type = "local"
listen = 18085
to = "git-server:7999"
''')
    result = you.sshwrap("up", "stranger")
    assert result.returncode == ExitCode.AUTH, result.stderr
    assert "bastion-host" in result.stderr
