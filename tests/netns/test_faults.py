"""Faults on a real path: a cut link and a crashed hop; tunnels come back by themselves, and
`status` tells the truth throughout."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sshwrap.netlab import GUIDE_PROFILES, NetLab
from tests.netns.lab_client import Client
from tests.netns.test_guides import read_banner, up

pytestmark = pytest.mark.netns

#: Generous bounds for waiting on state changes; the timings themselves are measured by
#: scripts/bench_reconnect.py, never asserted here.
NOTICE_WITHIN = 40.0
RECOVER_WITHIN = 40.0


def wait_for_state(you: Client, name: str, wanted: str, within: float,
                   seen: list[str]) -> dict[str, Any]:
    """Poll status until ``name`` is ``wanted``; every state seen on the way is recorded."""
    deadline = time.monotonic() + within
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = you.status(name)
        if not seen or seen[-1] != row["state"]:
            seen.append(row["state"])
        if row["state"] == wanted and (wanted != "up" or row.get("pid")):
            return row
        time.sleep(0.2)
    raise AssertionError(f"{name} never became {wanted}; states seen: {seen}; last: {row}")


def wait_for_failure_reason(you: Client, name: str, within: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    row = you.status(name)
    while not row.get("last_failure") and time.monotonic() < deadline:
        time.sleep(0.2)
        row = you.status(name)
    assert row.get("last_failure"), row
    return row


def test_cut_link_is_noticed_and_the_tunnel_returns(lab: NetLab, you: Client) -> None:
    you.write_profile("git", GUIDE_PROFILES["git"])
    up(you, "git")
    before = you.status("git")
    seen: list[str] = ["up"]
    lab.set_link("you", "internet", up=False)
    try:
        during = wait_for_state(you, "git", "reconnecting", NOTICE_WITHIN, seen)
        assert not any(f["healthy"] for f in during["forwards"])
        # status sees the dead client at once; the supervisor's reason follows a moment later
        during = wait_for_failure_reason(you, "git")
        assert during["state"] == "reconnecting", during
    finally:
        lab.set_link("you", "internet", up=True)
    after = wait_for_state(you, "git", "up", RECOVER_WITHIN, seen)
    assert after["pid"] != before["pid"]
    assert after["restarts"] >= 1
    assert all(f["healthy"] for f in after["forwards"]), after
    assert read_banner(lab, "you", 7999) == "SSH-2.0-git-like"
    assert "failed" not in seen  # a transient fault never looks fatal


def test_crashed_hop_is_survived(lab: NetLab, you: Client) -> None:
    you.write_profile("git", GUIDE_PROFILES["git"])
    up(you, "git")
    before = you.status("git")
    seen: list[str] = ["up"]
    lab.crash_sshd("bastion-host")  # the jump host, two hops from the git server
    try:
        wait_for_state(you, "git", "reconnecting", NOTICE_WITHIN, seen)
    finally:
        lab.start_sshd("bastion-host")
    after = wait_for_state(you, "git", "up", RECOVER_WITHIN, seen)
    assert after["pid"] != before["pid"]
    assert read_banner(lab, "you", 7999) == "SSH-2.0-git-like"


def test_remote_tunnel_survives_a_cut_link(lab: NetLab, you: Client) -> None:
    you.write_profile("share", GUIDE_PROFILES["share"])
    up(you, "share")
    seen: list[str] = ["up"]
    lab.set_link("you", "internet", up=False)
    try:
        wait_for_state(you, "share", "reconnecting", NOTICE_WITHIN, seen)
    finally:
        lab.set_link("you", "internet", up=True)
    # The server may still hold 8081 for the dead session until its own keep-alive notices;
    # the supervisor keeps retrying, saying so, until the port is free again.
    wait_for_state(you, "share", "up", RECOVER_WITHIN + 30, seen)
    code = ("import urllib.request as u\n"
            "print(u.urlopen('http://127.0.0.1:8081/back', timeout=10).read().decode())")
    result = lab.run("bastion-host", ["python3", "-c", code])
    assert "hello from you port 8888" in result.stdout, result.stderr
