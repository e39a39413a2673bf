"""An encrypted private key: its passphrase answered through sshwrap's askpass, or a hint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port
from tests.auth.auth_helpers import run_cli, write_profile
from tests.helpers import sshd_profile
from tests.runtime.tunnel_helpers import read_banner_through

pytestmark = pytest.mark.sshd
PASSPHRASE = "correct horse battery staple 42"  # noqa: S105 - a test key's passphrase


@pytest.fixture(scope="module")
def encrypted_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    root = tmp_path_factory.mktemp("encsshd")
    (root / "client").mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f",
                    str(root / "client" / "id_ed25519")], check=True)
    server = Sshd(root / "server", ClientIdentity(root / "client"))
    server.start()
    yield server
    server.stop()


def _profile(sshd: Sshd, target: int, listen: int) -> dict:
    return sshd_profile(sshd, target, listen, ssh_config_file=str(sshd.client.ssh_config))


def test_encrypted_key_without_passphrase_fails_with_auth(encrypted_sshd: Sshd,
                                                          state_dir: Path,
                                                          profiles_dir: Path) -> None:
    write_profile(profiles_dir, "enc0", _profile(encrypted_sshd, 9, free_port()))
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    done = run_cli("up", "enc0", "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 4, done.stderr
    assert "ssh-agent" in done.stderr


@pytest.mark.usefixtures("stop_all")
def test_passphrase_from_the_terminal(encrypted_sshd: Sshd, state_dir: Path,
                                      profiles_dir: Path) -> None:
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "enc", _profile(encrypted_sshd, target.port, listen))
        child = pexpect.spawn(sys.executable, ["-m", "sshwrap", "up", "enc", "--ask-passphrase",
                                               "--profiles", str(profiles_dir)],
                              env=dict(os.environ), encoding="utf-8", timeout=60)
        try:
            child.expect("Passphrase of")
            child.sendline(PASSPHRASE)
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == 0, child.before
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
