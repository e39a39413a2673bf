"""Many tunnels at once, from threads and from an event loop; passwords; typing for users."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

import sshwrap
from sshwrap.sandbox import BannerServer
from tests.api.api_helpers import listeners
from tests.auth.auth_helpers import PasswordServer
from tests.runtime.tunnel_helpers import BANNER, ECHO, read_banner_through


def test_ten_tunnels_from_ten_threads(keys: dict[str, Any], banner_server: BannerServer) -> None:
    tunnels = [sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(
        to=f"127.0.0.1:{banner_server.port}")]) for _ in range(10)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def open_one(tunnel: sshwrap.Tunnel) -> None:
        barrier.wait()
        try:
            tunnel.start()
        except BaseException as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=open_one, args=(t,)) for t in tunnels]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        # The threads that started them have ended; the tunnels live on.
        ports = {t.local_port for t in tunnels}
        assert len(ports) == 10 and len({t.pid for t in tunnels}) == 10
        for tunnel in tunnels:
            assert read_banner_through("127.0.0.1", tunnel.local_port) == (BANNER, ECHO)
    finally:
        for tunnel in tunnels:
            tunnel.stop()
    assert all(listeners(p) == {} for p in ports)


def test_async_with_does_not_block_the_loop(keys: dict[str, Any], banner_server: BannerServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ticks: list[int] = []
    seen: dict[str, Any] = {}
    real_stop = sshwrap.Tunnel.stop

    def stop_and_tell(tunnel: sshwrap.Tunnel) -> None:
        seen["stop_thread"] = threading.get_ident()
        real_stop(tunnel)

    monkeypatch.setattr(sshwrap.Tunnel, "stop", stop_and_tell)

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(len(ticks))
            await asyncio.sleep(0.005)

    async def main() -> None:
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        await asyncio.sleep(0)
        before = len(ticks)
        seen["loop_thread"] = threading.get_ident()
        async with sshwrap.Tunnel(**keys, forwards=[sshwrap.Local(
                to=f"127.0.0.1:{banner_server.port}")]) as t:
            seen["during_start"] = len(ticks) - before
            seen["pid"] = t.pid
            seen["echo"] = await asyncio.to_thread(read_banner_through, "::1", t.local_port)
        stop.set()
        await ticking

    asyncio.run(main())
    # The other task ran while the tunnel was started and verified; the stop ran off the
    # loop's thread (it may take less than one tick, so ticks during it prove nothing).
    assert seen["during_start"] > 1
    assert seen["stop_thread"] != seen["loop_thread"]
    assert seen["echo"] == (BANNER, ECHO)
    assert not psutil.pid_exists(seen["pid"])


def test_password_is_kept_out_of_argv_and_environment(
        api_password_server: PasswordServer, banner_server: BannerServer) -> None:
    server = api_password_server
    tunnel = sshwrap.Tunnel(
        host="127.0.0.1", port=server.sshd.port, user=server.user,
        ssh_config_file=str(server.ssh_config), password=server.password,
        forwards=[sshwrap.Local(to=f"127.0.0.1:{banner_server.port}")])
    with tunnel as t:
        assert t.pid is not None
        client = psutil.Process(t.pid)
        assert server.password not in " ".join(client.cmdline())
        assert server.password not in "".join(f"{k}={v}" for k, v in client.environ().items())
        assert read_banner_through(t.local_host, t.local_port) == (BANNER, ECHO)
    with pytest.raises(sshwrap.AuthFailed):
        sshwrap.Tunnel(host="127.0.0.1", port=server.sshd.port, user=server.user,
                       ssh_config_file=str(server.ssh_config), password=server.password + "x",
                       forwards=[sshwrap.Local(to="127.0.0.1:9")]).start()


def test_password_env_names_a_variable(api_password_server: PasswordServer,
                                       monkeypatch: pytest.MonkeyPatch,
                                       banner_server: BannerServer) -> None:
    server = api_password_server
    common = {"host": "127.0.0.1", "port": server.sshd.port, "user": server.user,
              "ssh_config_file": str(server.ssh_config), "auth": "password",
              "password_env": "DB_TUNNEL_PASSWORD",
              "forwards": [sshwrap.Local(to=f"127.0.0.1:{banner_server.port}")]}
    with pytest.raises(sshwrap.InvalidInput, match="DB_TUNNEL_PASSWORD is not set"):
        sshwrap.Tunnel(**common)
    monkeypatch.setenv("DB_TUNNEL_PASSWORD", server.password)
    with sshwrap.Tunnel(**common) as t:
        assert read_banner_through(t.local_host, t.local_port) == (BANNER, ECHO)


USER_SCRIPT = '''
import asyncio

import sshwrap


def open_db() -> int:
    tunnel = sshwrap.Tunnel(host="db.example.org", jump=["bastion"], user="me",
                            forwards=[sshwrap.Local(listen=0, to="db:5432")])
    with tunnel as t:
        port: int | None = t.forwards[0].listen_port
        pid: int | None = t.pid
        return t.local_port + (port or 0) + (pid or 0)


async def open_async() -> str:
    async with sshwrap.Tunnel.from_profile("mysql") as t:
        return t.local_host


def managed() -> None:
    report: sshwrap.UpReport = sshwrap.up("mysql")
    code: int = report.exit_code
    rows: sshwrap.StatusReport = sshwrap.status()
    sshwrap.down("mysql")
    try:
        asyncio.run(open_async())
    except sshwrap.SshwrapError as error:
        hint: str = error.hint
        print(code, rows, hint, int(error.exit_code))
'''


def test_a_user_script_is_clean_under_mypy_strict(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--cache-dir", os.devnull, str(script)], capture_output=True,
                          text=True, check=False, cwd=tmp_path, timeout=300,
                          env=os.environ | {"MYPYPATH": str(Path.cwd())})
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import sshwrap\nport: str = sshwrap.Tunnel(host='h').local_port\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--cache-dir", os.devnull, str(broken)], capture_output=True,
                          text=True, check=False, cwd=tmp_path, timeout=300,
                          env=os.environ | {"MYPYPATH": str(Path.cwd())})
    assert done.returncode == 1 and "incompatible types" in done.stdout.lower(), done.stdout
