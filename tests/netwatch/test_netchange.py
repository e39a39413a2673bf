"""In network namespaces: the client's address goes away and another appears; the engine
notices through netlink and the tunnel passes bytes again, with keep-alive off (so that
nothing else could bring it back)."""

from __future__ import annotations

import subprocess
import time

import pytest

from sshwrap.netlab import GUIDE_PROFILES, NetLab
from tests.netns.conftest import Client
from tests.netns.test_guides import up

pytestmark = pytest.mark.netns

#: A generous bound on waiting; the time itself is measured by scripts/bench_netchange.py.
RECOVER_WITHIN = 60.0
NEW_HOST_PART = "201"


def _banner(lab: NetLab) -> str | None:
    code = ("import socket\ntry:\n s = socket.create_connection(('127.0.0.1', 3307), timeout=2)\n"
            " s.settimeout(2)\n print(s.recv(100).decode().strip())\nexcept OSError:\n pass\n")
    return lab.run("you", ["python3", "-c", code], timeout=30).stdout.strip() or None


def _ip(lab: NetLab, *args: str) -> None:
    subprocess.run(["ip", "-n", lab.by_name["you"].netns, *args], check=True)


def test_tunnel_returns_after_the_address_changes(lab: NetLab, you: Client) -> None:
    # keepalive = 0: without the engine's re-verification this tunnel would look up forever
    # while its connection hangs on an address this machine no longer has.
    you.write_profile("mysql", "keepalive = 0\n" + GUIDE_PROFILES["mysql"])
    up(you, "mysql")
    assert _banner(lab) == "5.7.42-mysql-like"
    before = you.status("mysql")
    old = lab.by_name["you"].addresses["internet"]
    new = old.rsplit(".", 1)[0] + "." + NEW_HOST_PART
    _ip(lab, "addr", "del", f"{old}/24", "dev", "eth0")
    try:
        _ip(lab, "addr", "add", f"{new}/24", "dev", "eth0")
        deadline = time.monotonic() + RECOVER_WITHIN
        banner = None
        while banner is None and time.monotonic() < deadline:
            banner = _banner(lab)
            time.sleep(0.2)
        assert banner == "5.7.42-mysql-like"
        after = you.status("mysql")
        assert after["state"] == "up" and after["pid"] != before["pid"], after
        log = you.sshwrap("logs", "mysql", "-n", "200").stdout
        assert f"its local address {old} is gone: restarting the client" in log, log
    finally:
        _ip(lab, "addr", "flush", "dev", "eth0")
        _ip(lab, "addr", "add", f"{old}/24", "dev", "eth0")
