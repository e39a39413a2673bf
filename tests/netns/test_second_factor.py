"""A bastion that asks a one-time code after the key (PAM TOTP, keyboard-interactive): sshwrap
asks it on the terminal, once per start, and fails fast where nobody can answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.netlab import HostSpec, NetLab
from tests.netns.lab_client import Client, lab_client, running_lab

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.netns

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"  # noqa: S105 - the lab's throwaway TOTP seed
SECRET_FILE = Path("/tmp/sshwrap-otp-lab-secret")
PAM = (f"auth required pam_google_authenticator.so secret={SECRET_FILE} user=root\n"
       "account required pam_permit.so\nsession required pam_permit.so\n"
       "password required pam_deny.so\n")
#: For ``password,keyboard-interactive``: sshd's password method runs this stack too (UsePAM),
#: its conversation answering every prompt with the password. sshd names the methods passed
#: so far in SSH_AUTH_INFO_0: empty for the password method (pam_unix checks it, done), and
#: "password" for keyboard-interactive, which skips to the code alone.
PAM_PASSWORD = ('auth [success=1 default=ignore] pam_exec.so quiet /bin/sh -c '
                '[test -n "$SSH_AUTH_INFO_0"]\n'
                "auth [success=done default=die] pam_unix.so\n" + PAM)
HOSTS = (HostSpec("you", ("lan",)),
         HostSpec("otp-pw-host", ("lan",), sshd=True, pam_sshd=PAM_PASSWORD,
                  password_login=True, sshd_config=(
                      ("UsePAM", "yes"), ("KbdInteractiveAuthentication", "yes"),
                      ("AuthenticationMethods", "password,keyboard-interactive"))),
         HostSpec("otp-host", ("lan",), sshd=True, pam_sshd=PAM, sshd_config=(
             ("UsePAM", "yes"), ("KbdInteractiveAuthentication", "yes"),
             ("PermitRootLogin", "yes"),
             ("AuthenticationMethods", "publickey,keyboard-interactive"))))
FAILED_KBDINT = "Failed keyboard-interactive/pam"
PROFILE = 'host = "otp-host"\nrestart = "always"\n[[forward]]\ntype = "local"\n' \
    'listen = {port}\nto = "localhost:22"\n'


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    if subprocess.run(["which", "oathtool"], capture_output=True, check=False).returncode:
        pytest.skip("oathtool is not installed (apt-get install oathtool)")
    if not Path("/lib/x86_64-linux-gnu/security/pam_google_authenticator.so").exists() and \
            not list(Path("/lib").glob("*/security/pam_google_authenticator.so")):
        pytest.skip("apt-get install libpam-google-authenticator")
    SECRET_FILE.write_text(f'{SECRET}\n" TOTP_AUTH\n" WINDOW_SIZE 3\n')
    SECRET_FILE.chmod(0o400)
    try:
        with running_lab(tmp_path_factory.mktemp("otp"), HOSTS) as network:
            yield network
    finally:
        SECRET_FILE.unlink(missing_ok=True)


@pytest.fixture
def you(lab: NetLab, tmp_path: Path) -> Iterator[Client]:
    with lab_client(lab, tmp_path) as client:
        yield client


def code(offset: int = 0) -> str:
    """The current one-time code (``offset`` steps of 30 s away: a wrong one)."""
    argv = ["oathtool", "--totp", "-b", SECRET]
    if offset:
        then = time.gmtime(time.time() + offset * 30)
        argv.append(f"--now={time.strftime('%Y-%m-%d %H:%M:%S UTC', then)}")
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def sshd_log(lab: NetLab) -> str:
    return lab.sshd("otp-host").log_path.read_text(errors="replace")


def on_terminal(you: Client, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    argv = you.lab.exec_argv("you", [sys.executable, "-m", "sshwrap", *args])
    return pexpect.spawn(argv[0], argv[1:], env={**you.env(), **(env or {})},
                         encoding="utf-8", timeout=60)


def answer(child: pexpect.spawn, text: str, tunnel: str = "otp") -> None:
    child.expect(rf"{tunnel}: \(root@otp-host\) Verification code:")
    child.sendline(text)


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before


def no_trace(secret: str, *where: Path) -> None:
    """``secret`` is in no process's argv or environment, and in no file under ``where``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for name in ("cmdline", "environ"):
            try:
                data = (proc / name).read_bytes()
            except OSError:
                continue
            assert secret.encode() not in data, f"the code is in {proc}/{name}"
    for root in where:
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"the code is in {path}"


@pytest.mark.parametrize("lane", ["express", "full"])
def test_the_code_is_asked_on_the_terminal_and_nowhere_kept(you: Client, lab: NetLab,
                                                            lane: str) -> None:
    you.write_profile("otp", PROFILE.format(port=7401))
    child = on_terminal(you, "up", "otp",
                        env={"SSHWRAP_EXPRESS": "1" if lane == "express" else "0"})
    right = code()
    answer(child, right)
    status, output = finish(child)
    assert status == 0, output
    assert you.status("otp")["state"] == "up"
    no_trace(right, you.state)
    you.sshwrap("down", "otp")


def test_a_wrong_code_is_one_attempt_and_exit_4(you: Client, lab: NetLab) -> None:
    you.write_profile("otp", PROFILE.format(port=7402))
    before = sshd_log(lab).count(FAILED_KBDINT)
    child = on_terminal(you, "up", "otp")
    answer(child, code(offset=40))
    status, output = finish(child)
    assert status == 4, output
    assert "second factor" in output and "password" not in output
    assert sshd_log(lab).count(FAILED_KBDINT) == before + 1
    row = you.status("otp")  # nothing left running: a kept failure
    assert row["state"] == "failed" and row["pid"] is None, row


def test_without_a_terminal_it_fails_at_once_and_never_tries(you: Client, lab: NetLab) -> None:
    you.write_profile("otp", PROFILE.format(port=7403))
    before = sshd_log(lab).count("keyboard-interactive")
    result = you.sshwrap("up", "otp")
    assert result.returncode == 4, result.stderr
    assert "nobody could be asked" in result.stderr
    assert "sshwrap up otp' on a terminal" in result.stderr
    assert sshd_log(lab).count("keyboard-interactive") == before


def test_a_dropped_tunnel_becomes_a_kept_failure_without_attempts(you: Client,
                                                                  lab: NetLab) -> None:
    you.write_profile("otp", PROFILE.format(port=7404))
    child = on_terminal(you, "up", "otp")
    answer(child, code())
    assert finish(child)[0] == 0
    attempts = sshd_log(lab).count("keyboard-interactive")
    os.kill(you.status("otp")["pid"], signal.SIGKILL)
    row = you.status("otp")
    deadline = time.monotonic() + 60
    while row["state"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.5)
        row = you.status("otp")
    assert row["state"] == "failed", row
    assert "one-time code" in str(row), row
    time.sleep(3)  # no retry loop: the server sees no further attempt
    assert sshd_log(lab).count("keyboard-interactive") == attempts
    assert you.status("otp")["state"] == "failed"


def test_several_tunnels_ask_one_at_a_time(you: Client, lab: NetLab) -> None:
    you.write_profile("otp", PROFILE.format(port=7405))
    you.write_profile("otp2", PROFILE.format(port=7406))
    child = on_terminal(you, "up", "otp", "otp2")
    asked = []
    for _ in range(2):
        child.expect(r"(otp2?): \(root@otp-host\) Verification code:")
        asked.append(child.match.group(1))
        child.sendline(code())
    status, output = finish(child)
    assert status == 0, output
    assert sorted(asked) == ["otp", "otp2"]


API = """
import sys, sshwrap
from sshwrap.errors import AuthFailed
asked = []
def prompt(text):
    asked.append(text)
    return sys.argv[1]
try:
    sshwrap.Tunnel("otp-host", forwards=[sshwrap.Local("localhost:22")]).start()
except AuthFailed as error:
    print("refused:", error.message)
with sshwrap.Tunnel("otp-host", forwards=[sshwrap.Local("localhost:22")],
                    prompt=prompt) as tunnel:
    print("up", tunnel.local_port, asked)
"""


def test_the_python_api_asks_its_callback(you: Client, lab: NetLab) -> None:
    result = lab.run("you", [sys.executable, "-c", API, code()], env=you.env(), timeout=90)
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "one-time code" in result.stdout
    assert "(root@otp-host) Verification code:" in result.stdout
