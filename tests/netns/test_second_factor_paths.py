"""The second factor on the other paths: after a password (``password,keyboard-interactive``),
with plink as the client, and on a shared connection's master."""

from __future__ import annotations

import time

import pytest

from sshwrap.netlab import NetLab
from sshwrap.netservers import GUIDE_PASSWORD, GUIDE_USER
from sshwrap.runtime.client.hostkeys import fingerprint
from tests.netns.lab_client import Client
from tests.netns.test_second_factor import (
    FAILED_KBDINT,
    PROFILE,
    code,
    finish,
    lab,
    no_trace,
    on_terminal,
    sshd_log,
    you,
)

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.netns
__all__ = ["lab", "you"]  # the fixtures, shared with test_second_factor.py

PASSWORD_PROFILE = f'host = "otp-pw-host"\nuser = "{GUIDE_USER}"\nauth = "password"\n' \
    'password_env = "OTP_PW"\nrestart = "always"\n[[forward]]\ntype = "local"\n' \
    'listen = {port}\nto = "localhost:22"\n'
PASSWORD = {"OTP_PW": GUIDE_PASSWORD}
SHARED = "share_connection = true\n" + PROFILE


def pw_log(lab: NetLab) -> str:
    return lab.sshd("otp-pw-host").log_path.read_text(errors="replace")


def answer_pw(child: pexpect.spawn, text: str, tunnel: str = "pw") -> None:
    child.expect(rf"{tunnel}: \({GUIDE_USER}@otp-pw-host\) Verification code:")
    child.sendline(text)


def test_a_password_then_the_code_brings_the_tunnel_up(you: Client, lab: NetLab) -> None:
    you.write_profile("pw", PASSWORD_PROFILE.format(port=7411))
    child = on_terminal(you, "up", "pw", env=PASSWORD)
    right = code()
    answer_pw(child, right)
    status, output = finish(child)
    assert status == 0, output
    assert you.status("pw")["state"] == "up"
    log = pw_log(lab)
    assert f"Partial password for {GUIDE_USER}" in log  # the password method, then the code
    assert f"Accepted keyboard-interactive/pam for {GUIDE_USER}" in log
    for secret in (right, GUIDE_PASSWORD):
        no_trace(secret, you.state)
    you.sshwrap("down", "pw")


def test_after_a_password_a_wrong_code_is_one_attempt_and_exit_4(you: Client,
                                                                 lab: NetLab) -> None:
    you.write_profile("pw", PASSWORD_PROFILE.format(port=7412))
    before = pw_log(lab).count(FAILED_KBDINT)
    child = on_terminal(you, "up", "pw", env=PASSWORD)
    answer_pw(child, code(offset=40))
    status, output = finish(child)
    assert status == 4, output
    assert "second factor" in output and GUIDE_PASSWORD not in output
    assert pw_log(lab).count(FAILED_KBDINT) == before + 1
    row = you.status("pw")
    assert row["state"] == "failed" and row["pid"] is None, row
    no_trace(GUIDE_PASSWORD, you.state)


def test_plink_refuses_a_second_factor_at_once(you: Client, lab: NetLab) -> None:
    pin = fingerprint(lab.sshd("otp-pw-host").host_public_key.split()[1])
    you.write_profile("pw", PASSWORD_PROFILE.format(port=7413).replace(
        'restart = "always"\n', f'restart = "always"\nclient = "plink"\nhost_key = "{pin}"\n'))
    child = on_terminal(you, "up", "pw", env=PASSWORD)
    index = child.expect(["Verification code", pexpect.EOF, pexpect.TIMEOUT], timeout=60)
    assert index == 1, child.before  # never a question plink cannot pass on, never a hang
    child.close()
    assert child.exitstatus == 4, child.before
    assert "plink cannot answer" in child.before and 'client = "ssh"' in child.before
    assert you.status("pw")["state"] == "failed"


def test_a_shared_connection_asks_once_and_waits_for_the_answer(you: Client,
                                                               lab: NetLab) -> None:
    you.write_profile("one", SHARED.format(port=7421))
    you.write_profile("two", SHARED.format(port=7422))
    child = on_terminal(you, "up", "one", "two", "--wait", "2")
    child.expect(r"(one|two) \(shared\): \(root@otp-host\) Verification code:")
    time.sleep(4)  # a person reading the phone longer than --wait: it does not count
    child.sendline(code())
    status, output = finish(child)
    assert status == 0, output
    assert "Verification code" not in output  # asked once, for both
    assert you.status("one")["state"] == "up" and you.status("two")["state"] == "up"
    assert sshd_log(lab).count("Accepted keyboard-interactive") >= 1
    you.sshwrap("down", "one", "two")
