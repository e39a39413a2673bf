"""``check`` against a gateway whose sshd restricts forwarding: each restriction is a server
policy naming its setting, a busy remote port is told apart, and lifting it makes check pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sshwrap.netlab import NetLab
from tests.netns.check_lab import POLICY_HOSTS, build_lab, check, failing, sshwrap
from tests.netns.lab_client import Client

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    yield from build_lab(tmp_path_factory.mktemp("policylab"), POLICY_HOSTS, "tinyproxy")


def _profile(port: int | None, forward: str) -> str:
    where = f"port = {port}\n" if port else ""
    return f'host = "gateway"\n{where}restart = "no"\n[[forward]]\n{forward}'


LOCAL = 'type = "local"\nlisten = 18080\nto = "web:80"\nprobe = "http"\n'
DYNAMIC = 'type = "dynamic"\nlisten = 11080\nprobe_target = "web:80"\n'
REMOTE = 'type = "remote"\nlisten = 9000\nto = "localhost:8888"\nprobe = "http"\n'

#: (restriction, the forward it refuses, the setting check must name, exit code of 'up').
POLICIES = [
    ({"AllowTcpForwarding": "no"}, LOCAL, "AllowTcpForwarding", 0),
    ({"PermitOpen": "web:81"}, LOCAL, "PermitOpen", 0),
    ({"DisableForwarding": "yes"}, DYNAMIC, "DisableForwarding", 0),
    ({"AllowTcpForwarding": "local"}, REMOTE, "AllowTcpForwarding", 5),
    ({"PermitListen": "localhost:9100"}, REMOTE, "PermitListen", 5),
]


@pytest.mark.parametrize(("policy", "forward", "setting", "up_code"), POLICIES,
                         ids=[next(iter(p[0])) + "-" + p[1].split('"')[1] for p in POLICIES])
def test_restriction_is_server_policy_until_lifted(lab: NetLab, you: Client, *,
                                                   policy: dict[str, str], forward: str,
                                                   setting: str, up_code: int) -> None:
    port = 2200 + POLICIES.index((policy, forward, setting, up_code))
    server = lab.add_sshd("gateway", port, policy)
    you.write_profile("fwd", _profile(port, forward))
    code, _out, err = sshwrap(you, "up", "fwd")
    assert code == up_code, err
    code, steps = check(you, "fwd")
    assert code == 8
    refused = failing(steps)
    assert [s["segment"] for s in refused] == ["server policy"], refused
    assert setting in refused[0]["hint"] and "gateway" in refused[0]["hint"]
    kind = forward.split('"')[1]
    assert f"{kind} " in refused[0]["detail"] and "tunnel host (gateway:" in refused[0]["detail"]
    assert "busy" not in refused[0]["detail"] and "'to'" not in refused[0]["hint"]

    # The administrator lifts the restriction; the tunnel is started again.
    server.stop()
    server.extra_config = {}
    server.start()
    code, _out, err = sshwrap(you, "restart", "fwd")
    assert code == 0, err
    code, steps = check(you, "fwd")
    assert code == 0, failing(steps)
    if kind == "remote":  # the far end on this side is the real proxy the gateway reaches
        far = steps["far end of remote 9000 -> localhost:8888 (http)"]
        assert far["detail"].startswith("HTTP/1."), far
    sshwrap(you, "down", "fwd")


def test_busy_remote_port_is_not_a_policy(lab: NetLab, you: Client) -> None:
    you.write_profile("busy", _profile(None, REMOTE.replace("9000", "9001")))
    code, _out, err = sshwrap(you, "up", "busy")
    assert code == 5, err
    code, steps = check(you, "busy")
    assert code == 8
    [running] = failing(steps)
    assert running["segment"] == "gateway"
    assert "busy" in running["detail"] and "remote 9001 -> localhost:8888" in running["detail"]
    assert "tunnel host (gateway)" in running["detail"]
    for setting in ("AllowTcpForwarding", "PermitListen", "DisableForwarding"):
        assert setting not in running["hint"]
    # Repaired: another port.
    you.write_profile("busy", _profile(None, REMOTE.replace("9000", "9002")))
    code, _out, err = sshwrap(you, "up", "busy")
    assert code == 0, err
    code, steps = check(you, "busy")
    assert code == 0, failing(steps)
