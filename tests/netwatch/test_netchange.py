"""In network namespaces: the client's address goes away and another appears; the engine
notices through netlink and the tunnel passes bytes again, with keep-alive off (so that
nothing else could bring it back), on a connection of its own or on a shared one."""

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


def _change_address(lab: NetLab) -> str:
    """Move the client to another address on its segment; the address it had."""
    old = lab.by_name["you"].addresses["internet"]
    _ip(lab, "addr", "del", f"{old}/24", "dev", "eth0")
    _ip(lab, "addr", "add", f"{old.rsplit('.', 1)[0]}.{NEW_HOST_PART}/24", "dev", "eth0")
    return old


def _restore(lab: NetLab) -> None:
    _ip(lab, "addr", "flush", "dev", "eth0")
    _ip(lab, "addr", "add", f"{lab.by_name['you'].addresses['internet']}/24", "dev", "eth0")


def _banner_again(lab: NetLab) -> str | None:
    deadline = time.monotonic() + RECOVER_WITHIN
    banner = None
    while banner is None and time.monotonic() < deadline:
        banner = _banner(lab)
        time.sleep(0.2)
    return banner


def test_tunnel_returns_after_the_address_changes(lab: NetLab, you: Client) -> None:
    # keepalive = 0: without the engine's re-verification this tunnel would look up forever
    # while its connection hangs on an address this machine no longer has.
    you.write_profile("mysql", "keepalive = 0\n" + GUIDE_PROFILES["mysql"])
    up(you, "mysql")
    assert _banner(lab) == "5.7.42-mysql-like"
    before = you.status("mysql")
    try:
        old = _change_address(lab)
        assert _banner_again(lab) == "5.7.42-mysql-like"
        after = you.status("mysql")
        assert after["state"] == "up" and after["pid"] != before["pid"], after
        log = you.sshwrap("logs", "mysql", "-n", "200").stdout
        assert f"its local address {old} is gone: restarting the client" in log, log
    finally:
        _restore(lab)


def test_shared_tunnel_returns_after_the_address_changes(lab: NetLab, you: Client) -> None:
    # The connection is the master's: the engine re-verifies it as it does a tunnel's, ends
    # it, and the tunnel adds its forward to the new master at once (keep-alive is off).
    you.write_profile("mysql", "keepalive = 0\nshare_connection = true\n"
                      + GUIDE_PROFILES["mysql"])
    up(you, "mysql")
    assert _banner(lab) == "5.7.42-mysql-like"
    before = you.status("mysql")
    try:
        old = _change_address(lab)
        assert _banner_again(lab) == "5.7.42-mysql-like"
        after = you.status("mysql")
        # The pid of a shared tunnel is its master's: a new master carries the forward.
        assert after["state"] == "up" and after["pid"] != before["pid"], after
        assert after["restarts"] == before["restarts"] + 1, after
        assert f"its local address {old} is gone" in str(after["last_failure"]), after
        log = you.sshwrap("logs", "mysql", "-n", "200").stdout
        assert f"its local address {old} is gone" in log, log
    finally:
        _restore(lab)
