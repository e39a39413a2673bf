"""Against a real sshd: allowed options cannot weaken host keys, passwords or files."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sshwrap.sandbox import BannerServer, Sshd, free_port
from tests.auth.auth_helpers import PasswordServer, run_cli, write_profile

pytestmark = pytest.mark.sshd


def _allowed_options(tmp_path: Path) -> dict[str, Any]:
    """Every option of the allow-list, each set to a value that still lets the tunnel work."""
    return {
        "Ciphers": "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr",
        "MACs": "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
        "KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org",
        "HostKeyAlgorithms": "-ssh-dss",
        "PubkeyAcceptedAlgorithms": "-ssh-dss",
        "PubkeyAcceptedKeyTypes": "-ssh-dss",
        "CASignatureAlgorithms": "-ssh-dss",
        "ConnectTimeout": 10,
        "ConnectionAttempts": 1,
        "AddressFamily": "inet",
        "IPQoS": "af21",
        "TCPKeepAlive": True,
        "IdentitiesOnly": True,
        "IdentityAgent": "none",
        "CertificateFile": str(tmp_path / "no-such-cert.pub"),
        "PreferredAuthentications": "publickey,password",
        "PubkeyAuthentication": True,
        "GSSAPIAuthentication": False,
        "RekeyLimit": "1G",
        "RequiredRSASize": 2048,
        "BindAddress": "127.0.0.1",
        "BindInterface": "lo",
    }


def test_the_options_above_are_the_whole_allow_list(tmp_path: Path) -> None:
    from sshwrap.core.options import ALLOWED

    assert {name.lower() for name in _allowed_options(tmp_path)} == set(ALLOWED)


def _key_config(tmp_path: Path, sshd: Sshd, extra: str = "") -> tuple[Path, Path]:
    known = tmp_path / "known_hosts"
    known.touch(mode=0o600)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    IdentityFile {sshd.client.key}\n"
                      f"    UserKnownHostsFile {known}\n    GlobalKnownHostsFile /dev/null\n"
                      f"    UpdateHostKeys no\n{extra}")
    return config, known


def _profile(port: int, user: str, config: Path, listen: object, target: str,
             **keys: object) -> dict[str, Any]:
    data = {"host": "127.0.0.1", "port": port, "user": user, "restart": "no",
            "ssh_config_file": str(config),
            "forward": [{"type": "local", "listen": listen, "to": target}]}
    data.update(keys)
    return data


@pytest.mark.usefixtures("stop_all")
def test_every_allowed_option_still_works(sshd: Sshd, tmp_path: Path,
                                          profiles_dir: Path) -> None:
    """The control for the two tests below: with the right key, the same options connect."""
    config, known = _key_config(tmp_path, sshd)
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key.strip()}\n")
    with BannerServer() as target:
        write_profile(profiles_dir, "allopts", _profile(
            sshd.port, sshd.user, config, free_port(), f"127.0.0.1:{target.port}",
            options=_allowed_options(tmp_path)))
        done = run_cli("up", "allopts", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr


def test_changed_host_key_with_every_allowed_option_is_fatal(sshd: Sshd, tmp_path: Path,
                                                             profiles_dir: Path) -> None:
    config, known = _key_config(tmp_path, sshd)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    stale = f"[127.0.0.1]:{sshd.port} {other.with_suffix('.pub').read_text().strip()}\n"
    known.write_text(stale)
    for host_key in ("strict", "accept-new"):
        write_profile(profiles_dir, "changed", _profile(
            sshd.port, sshd.user, config, free_port(), "127.0.0.1:9",
            options=_allowed_options(tmp_path), host_key=host_key))
        up = run_cli("up", "changed", "--profiles", str(profiles_dir))
        assert up.returncode == 4, (host_key, up.stderr)
        assert "CHANGED" in up.stderr
        assert known.read_text() == stale


@pytest.mark.usefixtures("stop_all")
def test_wrong_password_with_allowed_options_is_one_attempt(
        security_password_server: PasswordServer, tmp_path: Path, profiles_dir: Path) -> None:
    server = security_password_server
    options = _allowed_options(tmp_path)
    options["PreferredAuthentications"] = "password,keyboard-interactive"
    options["PubkeyAuthentication"] = False

    def failures() -> int:  # any failed attempt: password or keyboard-interactive
        return sum(1 for line in server.sshd.log_path.read_text().splitlines()
                   if "Failed " in line and f" for {server.user} " in line)

    before, before_passwords = failures(), server.failed_passwords()
    write_profile(profiles_dir, "badpw", _profile(
        server.sshd.port, server.user, server.ssh_config, free_port(), "127.0.0.1:9",
        auth="password", password_env="TUNNEL_PW", options=options))  # noqa: S106
    env = dict(os.environ, TUNNEL_PW="not-" + server.password)
    done = run_cli("up", "badpw", "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 4, done.stderr
    assert server.failed_passwords() - before_passwords == 1  # the password reached sshd once
    assert failures() - before == 1  # and nothing else was tried


@pytest.mark.usefixtures("stop_all")
def test_a_regular_file_is_never_replaced_by_a_socket(sshd: Sshd, tmp_path: Path,
                                                      profiles_dir: Path) -> None:
    # The user's own config asks ssh to unlink; sshwrap's StreamLocalBindUnlink=no comes first.
    config, known = _key_config(tmp_path, sshd, "    StreamLocalBindUnlink yes\n")
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key.strip()}\n")
    important = tmp_path / "important.txt"
    important.write_text("keep me\n")
    with BannerServer() as target:
        write_profile(profiles_dir, "clobber", _profile(
            sshd.port, sshd.user, config, str(important), f"127.0.0.1:{target.port}"))
        done = run_cli("up", "clobber", "--profiles", str(profiles_dir))
    assert done.returncode != 0, done.stdout
    assert stat.S_ISREG(important.lstat().st_mode)
    assert important.read_text() == "keep me\n"


@pytest.mark.usefixtures("stop_all")
def test_relative_socket_is_taken_from_the_profile_folder(sshd: Sshd, tmp_path: Path,
                                                          profiles_dir: Path) -> None:
    config, known = _key_config(tmp_path, sshd)
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key.strip()}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with BannerServer() as target:
        write_profile(profiles_dir, "relsock", _profile(
            sshd.port, sshd.user, config, "./relsock.sock", f"127.0.0.1:{target.port}"))
        done = subprocess.run(
            [os.sys.executable, "-m", "sshwrap", "up", "relsock", "--profiles",
             str(profiles_dir)], capture_output=True, text=True, cwd=elsewhere, check=False,
            timeout=120)
        assert done.returncode == 0, done.stderr
        assert stat.S_ISSOCK((profiles_dir / "relsock.sock").lstat().st_mode)
        assert not (elsewhere / "relsock.sock").exists()
