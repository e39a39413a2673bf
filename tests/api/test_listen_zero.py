"""``listen = 0`` in profiles: accepted for local and dynamic forwards, refused elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import TcpAddress
from sshwrap.core.parse import parse_profile
from sshwrap.errors import InvalidInput
from sshwrap.runtime.system.freeport import with_free_ports


def test_local_and_dynamic_forwards_may_listen_on_port_zero() -> None:
    profile = parse_profile("db", {"host": "example.org", "forward": [
        {"type": "local", "listen": 0, "to": "db:5432"},
        {"type": "local", "listen": "127.0.0.1:0", "to": "db:5433"},
        {"type": "dynamic", "listen": "0"}]})
    assert [f.listen for f in profile.forwards] == [
        TcpAddress(None, 0), TcpAddress("127.0.0.1", 0), TcpAddress(None, 0)]


def test_a_remote_forward_on_port_zero_is_refused_naming_the_key() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_profile("db", {"host": "example.org", "forward": [
            {"type": "remote", "listen": 0, "to": "localhost:22"}]}, source="db.toml")
    assert str(caught.value).startswith("db.toml: forward[0].listen: 0 (a port chosen")
    assert caught.value.exit_code == 2


def test_compile_to_config_refuses_listen_zero() -> None:
    profile = parse_profile("db", {"host": "example.org", "forward": [
        {"type": "local", "listen": 8080, "to": "db:5432"},
        {"type": "local", "listen": 0, "to": "db:5432"}]})
    with pytest.raises(NotExpressible) as caught:
        compile_config(profile)
    assert caught.value.key == "forward[1].listen" and "fixed port" in caught.value.message


def test_chosen_ports_are_distinct_and_free_on_both_families() -> None:
    profile = parse_profile("db", {"host": "example.org", "forward": [
        {"type": "local", "listen": 0, "to": "db:5432"},
        {"type": "dynamic", "listen": 0},
        {"type": "local", "listen": 7000, "to": "db:1"}]})
    chosen = with_free_ports(profile, HostFacts(ipv6_loopback=True))
    ports = [f.listen.port for f in chosen.forwards if isinstance(f.listen, TcpAddress)]
    assert ports[2] == 7000 and 0 not in ports and len(set(ports)) == 3
    argv = compile_ssh(chosen, HostFacts(ipv6_loopback=True))
    assert f"127.0.0.1:{ports[0]}:db:5432" in argv and f"[::1]:{ports[0]}:db:5432" in argv


@pytest.mark.parametrize("target", ["config", "ssh", "plink"])
def test_compile_for_use_without_sshwrap_exits_2_naming_the_key(tmp_path: Path,
                                                                 target: str) -> None:
    # ssh refuses a local forward on port 0, and neither a Host block nor a printed command
    # line can report the port a dynamic one got: only sshwrap's own run can.
    path = tmp_path / "db.toml"
    path.write_text('host = "example.org"\n[[forward]]\ntype = "local"\nlisten = 7000\n'
                    'to = "db:1"\n[[forward]]\ntype = "dynamic"\nlisten = 0\n')
    done = subprocess.run([sys.executable, "-m", "sshwrap", "compile", str(path), "--to",
                           target], capture_output=True, text=True, check=False,
                          env=os.environ | {"PYTHONPATH": str(Path.cwd())}, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    named = {"config": "ssh_config"}.get(target, target)
    assert done.stderr.strip().splitlines() == [
        f"sshwrap: error: {path}: forward[1].listen: listen = 0 (a free port chosen at start) "
        f"needs sshwrap to run the tunnel; give a fixed port ({named} cannot express it)"]
