"""Password and passphrase delivery through sshwrap's askpass, against a real sshd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pexpect
import psutil
import pytest

from sshwrap.runtime.client.auth import PromptKind, SecretServer, classify_prompt
from sshwrap.sandbox import BannerServer, free_port
from tests.auth.auth_helpers import PasswordServer, password_profile, run_cli, write_profile
from tests.runtime.tunnel_helpers import read_banner_through

pytestmark = pytest.mark.sshd


@pytest.mark.parametrize(("prompt", "kind"), [
    ("alice@db.example's password: ", PromptKind.PASSWORD),
    ("Password:", PromptKind.PASSWORD),
    ("Enter passphrase for key '/home/a/.ssh/id_ed25519': ", PromptKind.PASSPHRASE),
    ("The authenticity of host 'x (1.2.3.4)' can't be established.\nED25519 key fingerprint "
     "is SHA256:abc.\nAre you sure you want to continue connecting (yes/no/[fingerprint])? ",
     PromptKind.HOST_KEY),
    ("Verification code: ", PromptKind.OTHER),
])
def test_prompts_are_classified(prompt: str, kind: PromptKind) -> None:
    assert classify_prompt(prompt) is kind


def _askpass(server: SecretServer, prompt: str) -> subprocess.CompletedProcess[str]:
    env = {"SSHWRAP_ASKPASS_SOCKET": str(server.socket_path), "PATH": os.environ["PATH"]}
    return subprocess.run([str(server.program), prompt], capture_output=True, text=True,
                          env=env, check=False, timeout=20)


def test_secret_server_answers_each_prompt_once_and_only_its_kind(tmp_path: Path) -> None:
    with SecretServer("s3cret", max_answers=2, root=tmp_path) as server:
        assert server.socket_path.stat().st_mode & 0o777 == 0o600
        assert server.socket_path.parent.stat().st_mode & 0o777 == 0o700
        host_key = _askpass(server, "Are you sure you want to continue connecting (yes/no)? ")
        assert (host_key.returncode, host_key.stdout) == (0, "no\n")
        assert _askpass(server, "Enter passphrase for key 'k': ").returncode == 1
        first = _askpass(server, "u@a's password: ")
        assert (first.returncode, first.stdout) == (0, "s3cret\n")
        assert _askpass(server, "u@a's password: ").returncode == 1  # never retried
        assert _askpass(server, "u@b's password: ").stdout == "s3cret\n"
        assert _askpass(server, "u@c's password: ").returncode == 1  # answers used up
        assert not server.socket_path.exists()
        assert server.answered == ["u@a's password:", "u@b's password:"]
    assert not server.program.parent.exists()


def _profile(server: PasswordServer, target_port: int, listen: int, **keys: object) -> dict:
    return password_profile(server, target_port, listen, **{"password_env": "TUNNEL_PW", **keys})


def _assert_secret_nowhere(secret: str, *dirs: Path) -> None:
    needle = secret.encode()
    for proc in psutil.process_iter():
        for name in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{proc.pid}/{name}").read_bytes()
            except OSError:
                continue
            assert needle not in data, f"the secret is in /proc/{proc.pid}/{name}"
    for folder in dirs:
        for path in folder.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the secret is in {path}"


@pytest.mark.usefixtures("stop_all")
def test_password_from_env_leaves_no_trace(password_server: PasswordServer, state_dir: Path,
                                           profiles_dir: Path) -> None:
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "pw", _profile(password_server, target.port, listen))
        env = dict(os.environ, TUNNEL_PW=password_server.password)
        done = run_cli("up", "pw", "--profiles", str(profiles_dir), env=env)
        assert done.returncode == 0, done.stderr
        banner, echo = read_banner_through("127.0.0.1", listen)
        assert banner.startswith(b"220") and echo
        _assert_secret_nowhere(password_server.password, state_dir, profiles_dir)
        assert password_server.password not in done.stdout + done.stderr


@pytest.mark.usefixtures("stop_all")
def test_supervised_password_tunnel_reauthenticates_after_a_crash(
        password_server: PasswordServer, state_dir: Path, profiles_dir: Path) -> None:
    """The supervisor keeps the password in memory only, and answers ssh again on restart."""
    import json
    import signal
    import time

    listen = free_port()
    with BannerServer() as target:
        data = _profile(password_server, target.port, listen)
        del data["restart"]  # the default, on-failure: supervised
        write_profile(profiles_dir, "suppw", data)
        env = dict(os.environ, TUNNEL_PW=password_server.password)
        done = run_cli("up", "suppw", "--profiles", str(profiles_dir), env=env)
        assert done.returncode == 0, done.stderr
        first = json.loads(run_cli("status", "suppw", "--json", "--profiles",
                                   str(profiles_dir)).stdout)[0]
        assert first["supervisor_pid"], first
        os.kill(first["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        row = first
        while time.monotonic() < deadline:
            row = json.loads(run_cli("status", "suppw", "--json", "--profiles",
                                     str(profiles_dir)).stdout)[0]
            if row["state"] == "up" and row["pid"] != first["pid"]:
                break
            time.sleep(0.2)
        assert row["state"] == "up" and row["pid"] != first["pid"], row
        assert row["restarts"] >= 1
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
        _assert_secret_nowhere(password_server.password, state_dir, profiles_dir)


@pytest.mark.usefixtures("stop_all")
def test_wrong_password_fails_once_with_exit_4(password_server: PasswordServer,
                                               profiles_dir: Path) -> None:
    before = password_server.failed_passwords()
    write_profile(profiles_dir, "badpw", _profile(password_server, 9, free_port()))
    env = dict(os.environ, TUNNEL_PW="not-" + password_server.password)
    done = run_cli("up", "badpw", "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 4, done.stderr
    assert "refused authentication" in done.stderr
    assert password_server.failed_passwords() - before == 1


def test_password_profile_without_secret_is_bad_input(password_server: PasswordServer,
                                                      state_dir: Path,
                                                      profiles_dir: Path) -> None:
    write_profile(profiles_dir, "nopw", _profile(password_server, 9, free_port()))
    env = {k: v for k, v in os.environ.items() if k != "TUNNEL_PW"}
    done = run_cli("up", "nopw", "--profiles", str(profiles_dir), env=env)
    assert done.returncode == 2
    assert "$TUNNEL_PW is not set" in done.stderr and "--ask-password" in done.stderr


@pytest.mark.usefixtures("stop_all")
def test_password_from_the_terminal(password_server: PasswordServer, state_dir: Path,
                                    profiles_dir: Path) -> None:
    import sys

    listen = free_port()
    with BannerServer() as target:
        data = _profile(password_server, target.port, listen)
        del data["password_env"]
        write_profile(profiles_dir, "ttypw", data)
        child = pexpect.spawn(sys.executable, ["-m", "sshwrap", "up", "ttypw", "--ask-password",
                                               "--profiles", str(profiles_dir)],
                              env=dict(os.environ), encoding="utf-8", timeout=60)
        try:
            child.expect("Password for ttypw")
            child.sendline(password_server.password)
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == 0, child.before
        assert password_server.password not in (child.before or "")  # not echoed
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
        _assert_secret_nowhere(password_server.password, state_dir, profiles_dir)
