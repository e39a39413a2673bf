"""sshwrap.Tunnel against the real sshd: verified forwards, chosen ports, clean stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import tomli_w

import sshwrap
from sshwrap.runtime.system import freeport
from sshwrap.sandbox import BannerServer
from tests.api.api_helpers import listeners, squat
from tests.runtime.tunnel_helpers import BANNER, ECHO, read_banner_through, socks5_banner


def test_local_listen_zero_binds_one_port_on_both_loopback_families(
        keys: dict[str, Any], banner_server: BannerServer) -> None:
    to = f"127.0.0.1:{banner_server.port}"
    tunnel = sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(listen=0, to=to)])
    assert tunnel.forwards[0].listen_port is None  # not chosen before the start
    with tunnel as t:
        port = t.forwards[0].listen_port
        assert port is not None and port == t.local_port and t.local_host == "127.0.0.1"
        assert t.pid is not None and psutil.Process(t.pid).ppid() == os.getpid()
        assert listeners(port) == {"127.0.0.1": t.pid, "::1": t.pid}
        assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)
        assert read_banner_through("::1", port) == (BANNER, ECHO)
        pid = t.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert listeners(port) == {}
    assert tunnel.pid is None and not tunnel.is_running


def test_dynamic_listen_zero_is_a_socks_proxy(keys: dict[str, Any],
                                                banner_server: BannerServer) -> None:
    with sshwrap.Tunnel(**keys, forwards=[sshwrap.Dynamic()]) as t:
        assert socks5_banner(t.local_port, "127.0.0.1", banner_server.port) == (BANNER, ECHO)


def test_from_profile_by_name_and_by_path(keys: dict[str, Any], profiles_dir: Path,
                                          banner_server: BannerServer) -> None:
    data = dict(keys, forward=[{"type": "local", "listen": 0,
                                "to": f"127.0.0.1:{banner_server.port}"}])
    path = profiles_dir / "mysql.toml"
    path.write_text(tomli_w.dumps(data))
    for ref in ("mysql", str(path)):
        with sshwrap.Tunnel.from_profile(ref) as t:
            assert t.name == "mysql"
            assert read_banner_through(t.local_host, t.local_port) == (BANNER, ECHO)


def test_start_and_stop_without_with(keys: dict[str, Any], banner_server: BannerServer) -> None:
    tunnel = sshwrap.Tunnel(**keys, forwards=[
        sshwrap.Local(to=f"127.0.0.1:{banner_server.port}"),
        sshwrap.Local(listen="127.0.0.1:0", to=f"127.0.0.1:{banner_server.port}")])
    tunnel.start()
    try:
        first, second = (f.listen_port for f in tunnel.forwards)
        assert first != second
        assert listeners(second or 0) == {"127.0.0.1": tunnel.pid}
    finally:
        tunnel.stop()
    tunnel.stop()  # a second stop is a no-op


def test_a_chosen_port_taken_meanwhile_is_chosen_again(
        keys: dict[str, Any], banner_server: BannerServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = squat("::1")
    taken = squatter.getsockname()[1]
    real = freeport.free_port
    offered: list[int] = []

    def first_offers_the_squatted_port(hosts: list[str], avoid: set[int]) -> int:
        offered.append(taken if not offered else real(hosts, avoid | {taken}))
        return offered[-1]

    monkeypatch.setattr(freeport, "free_port", first_offers_the_squatted_port)
    with squatter, sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(
            to=f"127.0.0.1:{banner_server.port}")]) as t:
        assert offered[0] == taken and t.local_port == offered[1] != taken
        assert listeners(t.local_port) == {"127.0.0.1": t.pid, "::1": t.pid}


@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
def test_a_squatter_on_one_family_fails_the_start(keys: dict[str, Any], family: str,
                                                  banner_server: BannerServer) -> None:
    with squat(family) as squatter:
        port = squatter.getsockname()[1]
        tunnel = sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(
            listen=port, to=f"127.0.0.1:{banner_server.port}")])
        with pytest.raises(sshwrap.ForwardingFailed) as caught:
            tunnel.start()
        assert caught.value.exit_code == 5 and str(port) in str(caught.value)
        assert set(listeners(port)) == {family}
    assert not tunnel.is_running


def test_bad_keywords_raise_invalid_input_naming_the_key(keys: dict[str, Any]) -> None:
    with pytest.raises(sshwrap.InvalidInput) as caught:
        sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(to="no-port-here")])
    assert caught.value.exit_code == 2 and "forward[0].to" in str(caught.value)
    with pytest.raises(sshwrap.InvalidInput, match=r"forward\[0\]\.listen"):
        sshwrap.Tunnel(**keys, forwards=[sshwrap.Remote(listen=0, to="127.0.0.1:1")])
    with pytest.raises(sshwrap.InvalidInput, match="colour"):
        sshwrap.Tunnel(**keys, colour="blue")
    with pytest.raises(sshwrap.ProfileNotFound):
        sshwrap.Tunnel.from_profile("no-such-profile")


def test_auth_failure_raises_auth_failed(keys: dict[str, Any], tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    config = tmp_path / "config"
    known = Path(keys["ssh_config_file"]).read_text()
    config.write_text("".join(line + "\n" for line in known.splitlines()
                              if "IdentityFile" not in line) + f"    IdentityFile {stranger}\n"
                      "    IdentitiesOnly yes\n    IdentityAgent none\n")
    tunnel = sshwrap.Tunnel(**dict(keys, ssh_config_file=str(config)),
                            forwards=[sshwrap.Local(to="127.0.0.1:9")])
    with pytest.raises(sshwrap.AuthFailed) as caught:
        tunnel.start()
    assert caught.value.exit_code == 4


def test_unknown_host_key_raises_auth_failed(keys: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "config"
    text = Path(keys["ssh_config_file"]).read_text()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config.write_text("".join(
        (f"    UserKnownHostsFile {empty}" if "UserKnownHostsFile" in line else line) + "\n"
        for line in text.splitlines()))
    with pytest.raises(sshwrap.AuthFailed, match=r"(?i)host key"):
        sshwrap.Tunnel(**dict(keys, ssh_config_file=str(config)),
                       forwards=[sshwrap.Local(to="127.0.0.1:9")]).start()


def test_refused_connection_raises_connection_failed(keys: dict[str, Any]) -> None:
    with squat("127.0.0.1") as bound:  # a port nobody accepts on: bound, never listening
        closed = bound.getsockname()[1]
    with pytest.raises(sshwrap.ConnectionFailed) as caught:
        sshwrap.Tunnel(**dict(keys, port=closed), forwards=[sshwrap.Local(to="127.0.0.1:9")],
                       restart="no").start()
    assert caught.value.exit_code == 6


class Boom(Exception):
    pass


@pytest.mark.parametrize("raised", [Boom, KeyboardInterrupt])
def test_a_with_block_that_raises_stops_everything(keys: dict[str, Any], raised: type,
                                                   banner_server: BannerServer) -> None:
    tunnel = sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(to=f"127.0.0.1:{banner_server.port}")])
    pids: list[int] = []
    with pytest.raises(raised), tunnel as t:
        assert t.pid is not None
        pids.append(t.pid)
        raise raised()
    assert pids and not psutil.pid_exists(pids[0])
    assert not tunnel.is_running


def test_import_is_light_and_every_public_name_is_exported() -> None:
    code = ("import sys, sshwrap\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')"
            " or m.startswith('sshwrap.cli')]\n"
            "assert not heavy, heavy\n"
            "missing = [n for n in sshwrap.__all__ if not hasattr(sshwrap, n)]\n"
            "assert not missing, missing\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, env=os.environ | {"PYTHONPATH": str(Path.cwd())})
    assert result.stdout == "ok\n", result.stderr
    for name in ("Tunnel", "Local", "Remote", "Dynamic", "SshwrapError", "InvalidInput",
                 "ProfileNotFound", "AuthFailed", "ForwardingFailed", "ConnectionFailed",
                 "NotReady", "MissingBinary", "up", "status", "down"):
        assert name in sshwrap.__all__
    assert (Path(sshwrap.__file__).parent / "py.typed").exists()
