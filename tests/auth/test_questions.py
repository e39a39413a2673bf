"""Second-factor questions without a server: their kind, who answers them, and the diagnosis."""

from __future__ import annotations

from pathlib import Path

from sshwrap import askpass
from sshwrap.core.diagnose import diagnose_log
from sshwrap.core.parse import parse_profile
from sshwrap.runtime.client.auth import PromptKind, SecretServer, classify_prompt

PROFILE = parse_profile("otp", {"host": "bastion", "user": "me",
                                "forward": [{"type": "local", "listen": 7000, "to": "db:5432"}]})
PARTIAL = ('Authenticated using "publickey" with partial success.\n'
           "debug1: Authentications that can continue: keyboard-interactive\n")
DENIED = "me@bastion: Permission denied (keyboard-interactive).\n"


def test_a_servers_question_is_never_a_passphrase_or_host_key() -> None:
    assert classify_prompt("(me@bastion) Verification code: ") is PromptKind.QUESTION
    assert classify_prompt("(me@bastion) Enter passphrase for key: ") is PromptKind.QUESTION
    assert classify_prompt("(me@bastion) continue connecting (yes/no)?") is PromptKind.QUESTION
    assert classify_prompt("(me@bastion) Password: ") is PromptKind.PASSWORD
    assert classify_prompt("Enter passphrase for key '/k': ") is PromptKind.PASSPHRASE


def test_each_question_goes_to_the_asker_once_and_never_gets_the_passphrase(
        tmp_path: Path) -> None:
    asked: list[str] = []

    def ask(text: str) -> str:
        asked.append(text)
        return "123456"

    with SecretServer("pass-phrase", kind=PromptKind.PASSPHRASE, root=tmp_path,
                      ask=ask) as server:
        path = str(server.socket_path)
        question = "(me@bastion) Verification code: "
        assert askpass.ask(path, question) == b"123456"
        assert askpass.ask(path, question) is None  # once per start
        assert askpass.ask(path, "(me@bastion) Enter passphrase for key: ") == b"123456"
        assert askpass.ask(path, "Enter passphrase for key '/k': ") == b"pass-phrase"
    assert asked == [question.strip(), "(me@bastion) Enter passphrase for key:"]


def test_without_an_asker_a_question_is_refused(tmp_path: Path) -> None:
    told: list[bool] = []
    with SecretServer("pw", root=tmp_path, on_unasked=lambda: told.append(True)) as server:
        assert askpass.ask(str(server.socket_path), "(me@bastion) Verification code: ") is None
    assert told == [True]


def test_diagnosis_tells_a_second_factor_from_a_refused_key() -> None:
    untried = diagnose_log(PARTIAL + DENIED, PROFILE)
    assert untried is not None and "accepted the key" in untried.message
    assert "on a terminal" in untried.hint and "password" not in untried.hint
    tried = diagnose_log(PARTIAL + "debug1: Next authentication method: keyboard-interactive\n"
                         + DENIED, PROFILE)
    assert tried is not None and "refused the answer to its second factor" in tried.message
    refused = diagnose_log("debug1: Authentications that can continue: publickey\n"
                           "me@bastion: Permission denied (publickey).\n", PROFILE)
    assert refused is not None and "second factor" not in refused.message


PLINK = ("Using username \"me\".\nSent password\nFurther authentication required\n"
         "Attempting keyboard-interactive authentication\n"
         "Keyboard-interactive authentication prompts from server:\n"
         "Configured password was not accepted\n"
         "FATAL ERROR: Configured password was not accepted\n")


def test_plink_meeting_a_second_factor_is_told_to_use_ssh() -> None:
    from sshwrap.core.diagnose.model import FailureKind
    from sshwrap.core.model import Client

    profile = parse_profile("otp", {"host": "bastion", "user": "me", "client": "plink",
                                    "auth": "password", "password_env": "PW",
                                    "forward": [{"type": "local", "listen": 7000,
                                                 "to": "db:5432"}]})
    assert profile.client is Client.PLINK
    found = diagnose_log(PLINK, profile)
    assert found is not None and "plink cannot answer" in found.message
    assert 'client = "ssh"' in found.hint and found.kind is FailureKind.AUTH_FAILED
    wrong = diagnose_log(PLINK.replace("Further authentication required\n", ""), profile)
    assert wrong is not None and "refused authentication" in wrong.message


SHOW = """
from sshwrap.runtime.client.questions import TerminalPrompter
question = "(me@bastion) \\x1b]0;owned\\x07\\x1b[2J" + "x" * 1000 + " Verification code: "
print("answer:", TerminalPrompter()(question))
"""


def test_a_question_is_shown_escaped_and_cut_on_the_terminal() -> None:
    import sys

    import pexpect

    child = pexpect.spawn(sys.executable, ["-c", SHOW], encoding="utf-8", timeout=30)
    child.expect("Verification code: ")
    shown = child.before
    child.sendline("123456")
    child.expect(pexpect.EOF)
    child.close()
    assert "answer: 123456" in child.before and "123456" not in shown  # not echoed
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]0;owned\\x07\\x1b[2J" in shown
    assert "characters left out]" in shown and len(shown) < 400


def test_the_askpass_program_runs_whatever_the_umask_and_its_socket_is_private(
        tmp_path: Path) -> None:
    import os
    import stat
    import subprocess

    old = os.umask(0o177)  # a caller's narrow umask: the program must stay runnable
    try:
        with SecretServer("secret", root=tmp_path) as server:
            assert stat.S_IMODE(server.program.stat().st_mode) == 0o700
            assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o600
            ran = subprocess.run([str(server.program), "(me@bastion) Password: "],
                                 env={askpass.SOCKET_ENV: str(server.socket_path)},
                                 capture_output=True, check=False, timeout=30)
            assert (ran.returncode, ran.stdout) == (0, b"secret\n")
    finally:
        os.umask(old)
