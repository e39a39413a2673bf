"""The issue's jump-host example, and a tunnel of a program ends with the program."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import sshwrap
from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd
from tests.api.api_helpers import listeners
from tests.runtime.tunnel_helpers import BANNER, ECHO, eventually, process_gone, read_banner_through


def test_through_a_jump_host_with_a_chosen_port(sshd: Sshd, tmp_path: Path,
                                                banner_server: BannerServer) -> None:
    # The same sshd as jump (127.0.0.1) and tunnel host ("localhost": ssh refuses a loop).
    identity = ClientIdentity(tmp_path / "jumper")
    shutil.copy(sshd.client.key, identity.key)
    shutil.copy(sshd.client.key.with_suffix(".pub"), identity.key.with_suffix(".pub"))
    shutil.copy(sshd.client.known_hosts, identity.known_hosts)
    identity.trust("localhost", sshd.port, sshd.host_public_key)
    tunnel = sshwrap.Tunnel(
        host="localhost", port=sshd.port, jump=[f"{sshd.user}@127.0.0.1:{sshd.port}"],
        user=sshd.user, ssh_config_file=str(identity.ssh_config),
        forwards=[sshwrap.Local(listen=0, to=f"127.0.0.1:{banner_server.port}")])
    with tunnel as t:
        port = t.forwards[0].listen_port
        assert port is not None and listeners(port) == {"127.0.0.1": t.pid, "::1": t.pid}
        assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)


PROGRAM = """
import sys, sshwrap
keys = dict(host="127.0.0.1", port=int(sys.argv[1]), user=sys.argv[2],
            ssh_config_file=sys.argv[3])
tunnel = sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(to="127.0.0.1:" + sys.argv[4])])
tunnel.start()
print(tunnel.pid, tunnel.local_port, flush=True)
if sys.argv[5] == "wait":
    sys.stdin.read()
"""


def _program(keys: dict[str, Any], banner: BannerServer, how: str,
             tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(keys["port"]), keys["user"],
         keys["ssh_config_file"], str(banner.port), how],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": str(Path.cwd()), "TMPDIR": str(tmp)})


def test_the_client_dies_with_a_killed_program(keys: dict[str, Any], short_tmp: Path,
                                               banner_server: BannerServer) -> None:
    program = _program(keys, banner_server, "wait", short_tmp)
    assert program.stdout is not None
    pid, port = (int(x) for x in program.stdout.readline().split())
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)
    program.send_signal(signal.SIGKILL)
    program.wait()
    eventually(lambda: process_gone(pid), "the client ends with its program (SIGKILL)")
    eventually(lambda: listeners(port) == {}, "its port is free")
    # Its private directory stays until the next tunnel of this user starts.
    assert [p.name.split("-")[2] for p in short_tmp.glob("sshwrap-tunnel-*")] == [
        str(program.pid)]
    with sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(to=f"127.0.0.1:{banner_server.port}")]):
        assert [p.name.split("-")[2] for p in short_tmp.glob("sshwrap-tunnel-*")] == [
            str(os.getpid())]


def test_a_program_that_ends_without_stopping_leaves_nothing(
        keys: dict[str, Any], short_tmp: Path, banner_server: BannerServer) -> None:
    program = _program(keys, banner_server, "exit", short_tmp)
    out, _ = program.communicate(timeout=120)
    pid, port = (int(x) for x in out.split())
    assert program.returncode == 0
    assert process_gone(pid) and listeners(port) == {}
    assert list(short_tmp.glob("sshwrap-tunnel-*")) == []
