"""plink as a first-class client: password through a pipe, pinned host key, busy port."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from sshwrap.runtime.client.hostkeys import fingerprint
from sshwrap.sandbox import BannerServer, free_port
from tests.auth.auth_helpers import PasswordServer, run_cli, write_profile
from tests.helpers import sshd_profile
from tests.runtime.tunnel_helpers import read_banner_through

pytestmark = [pytest.mark.sshd, pytest.mark.plink,
              pytest.mark.skipif(shutil.which("plink") is None, reason="plink is not installed")]


def _profile(server: PasswordServer, target: int, listen: int, **keys: object) -> dict:
    return sshd_profile(server.sshd, target, listen, user=server.user, **{
        "client": "plink", "auth": "password", "password_env": "TUNNEL_PW",
        "host_key": fingerprint(server.sshd.host_public_key.split()[1]), **keys})


@pytest.mark.usefixtures("stop_all")
def test_plink_password_from_a_pipe(password_server: PasswordServer, state_dir: Path,
                                    profiles_dir: Path) -> None:
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "plinkpw", _profile(password_server, target.port, listen))
        env = dict(os.environ, TUNNEL_PW=password_server.password)
        done = run_cli("up", "plinkpw", "--profiles", str(profiles_dir), env=env)
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
    status = run_cli("status", "plinkpw", "--json", "--profiles", str(profiles_dir))
    assert "-pw\"" not in status.stdout and password_server.password not in status.stdout
    assert (state_dir / "putty").is_dir()  # PUTTYDIR: nothing lands in ~/.putty
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert password_server.password.encode() not in path.read_bytes()


def test_plink_wrong_pin_is_auth_failure(password_server: PasswordServer,
                                         profiles_dir: Path) -> None:
    write_profile(profiles_dir, "plinkpin", _profile(password_server, 9, free_port(),
                                                     host_key="SHA256:" + "B" * 43))
    env = dict(os.environ, TUNNEL_PW=password_server.password)
    done = run_cli("up", "plinkpin", "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 4, done.stderr


def test_plink_busy_port_fails_up_with_exit_5(password_server: PasswordServer,
                                              profiles_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        write_profile(profiles_dir, "plinkbusy", _profile(password_server, 9, port))
        env = dict(os.environ, TUNNEL_PW=password_server.password)
        done = run_cli("up", "plinkbusy", "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 5, done.stderr
    assert "cannot listen" in done.stderr or "taken" in done.stderr


def test_plink_with_an_openssh_key_names_puttygen(password_server: PasswordServer,
                                                  profiles_dir: Path) -> None:
    data = _profile(password_server, 9, free_port(), auth="key",
                    identity_file=str(password_server.sshd.client.key))
    del data["password_env"]
    write_profile(profiles_dir, "plinkkey", data)
    done = run_cli("up", "plinkkey", "--profiles", str(profiles_dir))
    assert done.returncode == 2 and "puttygen" in done.stderr
