"""Remote forwards proven from the far side: a program squatting on the tunnel host's
127.0.0.1:P or [::1]:P (sshd binds the other family and reports success) is caught by ``up``
and ``check``; a free port is proven on both families and reaches this machine's service."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from sshwrap.netlab import HostSpec, NetLab, Service
from tests.netns.check_lab import build_lab, check, failing, sshwrap
from tests.netns.lab_client import Client

pytestmark = pytest.mark.netns

#: The tunnel host runs a squatter on 127.0.0.1:9101 and one on [::1]:9102 (and on [::1]:9105,
#: where a forward names 127.0.0.1 explicitly); this side serves HTTP on its 127.0.0.1:8888.
HOSTS: tuple[HostSpec, ...] = (
    HostSpec("you", ("internet",), services=(Service(8888, "http", bind="127.0.0.1"),)),
    HostSpec("gateway", ("internet",), sshd=True, services=(
        Service(9101, "banner", "squatter", bind="127.0.0.1"),
        Service(9102, "banner", "squatter", bind="::1"),
        Service(9105, "banner", "squatter", bind="::1"))),
    HostSpec("v4only", ("internet",), sshd=True),
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    yield from build_lab(tmp_path_factory.mktemp("farside"), HOSTS)


def _profile(listen: str, host: str = "gateway", port: int | None = None) -> str:
    where = f"port = {port}\n" if port else ""
    return (f'host = "{host}"\n{where}[[forward]]\ntype = "remote"\nlisten = {listen}\n'
            'to = "localhost:8888"\nprobe = "http"\n')


def _fetch(lab: NetLab, host: str, url: str) -> str:
    """What a program on ``host`` gets from ``url``."""
    code = (f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5)"
            ".read().decode())")
    done = lab.run(host, [sys.executable, "-c", code], timeout=30)
    return done.stdout + done.stderr


@pytest.mark.parametrize(("port", "where"), [(9101, "127.0.0.1:9101"), (9102, "[::1]:9102")],
                         ids=["ipv4-squatter", "ipv6-squatter"])
def test_squatter_on_one_family_fails_up_and_check(lab: NetLab, you: Client, port: int,
                                                   where: str) -> None:
    you.write_profile("rev", _profile(str(port)))
    code, _out, err = sshwrap(you, "up", "rev")
    assert code == 5, err
    assert where in err and "tunnel host (gateway)" in err and "held by another program" in err
    row = you.status("rev")
    assert row["state"] == "failed" and row["pid"] is None, row  # nothing left running
    assert where in row["last_failure"]
    code, steps = check(you, "rev")
    assert code == 8
    assert any(where in s["detail"] and "gateway" in s["detail"] for s in failing(steps)), steps
    # The squatter still answers programs on the tunnel host: it was never displaced.
    assert "squatter" in _fetch(lab, "gateway", f"http://{where}/")


def test_free_port_is_proven_on_both_families(lab: NetLab, you: Client) -> None:
    you.write_profile("rev", _profile("9103"))
    code, _out, err = sshwrap(you, "up", "rev")
    assert code == 0, err
    [forward] = you.status("rev")["forwards"]
    assert forward["healthy"]
    assert "proven from the tunnel host (gateway) on 127.0.0.1:9103 and [::1]:9103" \
        in forward["detail"], forward
    code, steps = check(you, "rev")
    assert code == 0, failing(steps)
    far = steps["remote localhost:9103 reached from the tunnel host (far side)"]
    assert far["status"] == "pass" and "[::1]:9103" in far["detail"], far
    for url in ("http://127.0.0.1:9103/", "http://[::1]:9103/"):
        assert "hello from you port 8888" in _fetch(lab, "gateway", url), url


def test_probe_forbidden_by_server_policy_is_said(lab: NetLab, you: Client) -> None:
    server = lab.add_sshd("gateway", 2301, {"AllowTcpForwarding": "remote"})
    try:
        you.write_profile("rev", _profile("9104", port=2301))
        code, _out, err = sshwrap(you, "up", "rev")
        assert code == 0, err
        [forward] = you.status("rev")["forwards"]
        assert "far side not proven" in forward["detail"], forward
        assert "server policy" in forward["detail"], forward
        _code, steps = check(you, "rev")
        far = steps["remote localhost:9104 reached from the tunnel host (far side)"]
        assert far["status"] == "skip" and far["segment"] == "server policy", far
        assert "AllowTcpForwarding remote" in far["detail"], far
        sshwrap(you, "down", "rev")
    finally:
        server.stop()


def test_explicit_ipv4_is_proven_there_only(lab: NetLab, you: Client) -> None:
    """sshd honours 127.0.0.1 with GatewayPorts no: the squatter on [::1]:9105 is not the
    forward's address and is left alone."""
    you.write_profile("rev", _profile('"127.0.0.1:9105"'))
    code, _out, err = sshwrap(you, "up", "rev")
    assert code == 0, err
    [forward] = you.status("rev")["forwards"]
    assert forward["detail"] == "proven from the tunnel host (gateway) on 127.0.0.1:9105", forward
    assert "hello from you port 8888" in _fetch(lab, "gateway", "http://127.0.0.1:9105/")
    assert "squatter" in _fetch(lab, "gateway", "http://[::1]:9105/")


def test_tunnel_host_without_ipv6_is_no_failure(lab: NetLab, you: Client) -> None:
    """No ::1 at all: sshd's connect says 'Cannot assign requested address' (a squatter
    would accept), so the family is absent, not held."""
    lab.run("v4only", ["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1"], check=True)
    you.write_profile("rev", _profile("9106", host="v4only"))
    code, _out, err = sshwrap(you, "up", "rev")
    assert code == 0, err
    [forward] = you.status("rev")["forwards"]
    assert "on 127.0.0.1:9106" in forward["detail"], forward
    assert "the tunnel host has no ::1" in forward["detail"], forward
