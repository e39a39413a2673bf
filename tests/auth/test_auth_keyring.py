"""password_keyring: the password read from the keyring (a file backend here), against a real
sshd; the password command; bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sshwrap.core.parse import parse_profile
from sshwrap.errors import InvalidInput
from sshwrap.sandbox import BannerServer, free_port
from tests.auth.auth_helpers import PasswordServer, password_profile, run_cli, write_profile
from tests.auth.filekeyring import BACKEND, DATA_ENV, FILE_NAME
from tests.auth.test_auth_password import _assert_secret_nowhere
from tests.runtime.tunnel_helpers import read_banner_through

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sshd


@pytest.fixture
def keyring_env(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "keyring"
    data.mkdir()
    return {**os.environ, "PYTHON_KEYRING_BACKEND": BACKEND, DATA_ENV: str(data),
            "PYTHONPATH": str(REPO)}


def _entries(env: dict[str, str]) -> dict[str, str]:
    path = Path(env[DATA_ENV]) / FILE_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def _profile(server: PasswordServer, target_port: int, listen: int) -> dict[str, object]:
    return password_profile(server, target_port, listen, password_keyring=True)


@pytest.mark.usefixtures("stop_all")
def test_password_from_the_keyring_leaves_no_trace(
        password_server: PasswordServer, state_dir: Path, profiles_dir: Path,
        keyring_env: dict[str, str]) -> None:
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "kr", _profile(password_server, target.port, listen))
        stored = run_cli("password", "set", "kr", "--profiles", str(profiles_dir),
                         env=keyring_env, stdin=password_server.password + "\n")
        assert stored.returncode == 0, stored.stderr
        assert _entries(keyring_env) == {"sshwrap/kr": password_server.password}
        done = run_cli("up", "kr", "--profiles", str(profiles_dir), env=keyring_env)
        assert done.returncode == 0, done.stderr
        banner, echo = read_banner_through("127.0.0.1", listen)
        assert banner.startswith(b"220") and echo
        _assert_secret_nowhere(password_server.password, state_dir, profiles_dir)
        output = stored.stdout + stored.stderr + done.stdout + done.stderr
        assert password_server.password not in output


def test_no_entry_is_bad_input_and_starts_nothing(
        password_server: PasswordServer, state_dir: Path, profiles_dir: Path,
        keyring_env: dict[str, str]) -> None:
    path = write_profile(profiles_dir, "nokr", _profile(password_server, 9, free_port()))
    log_before = password_server.sshd.log_path.read_text()
    done = run_cli("up", "nokr", "--profiles", str(profiles_dir), env=keyring_env)
    assert done.returncode == 2, done.stderr
    first = done.stderr.splitlines()[0]
    assert str(path) in first and "password_keyring" in first and "no password" in first
    assert "sshwrap password set nokr" in done.stderr
    assert password_server.sshd.log_path.read_text() == log_before  # no connection was made
    status = json.loads(run_cli("status", "nokr", "--json", "--profiles", str(profiles_dir),
                                env=keyring_env).stdout)
    assert [row["state"] for row in status] == ["down"]


def test_password_set_and_delete(profiles_dir: Path, keyring_env: dict[str, str]) -> None:
    write_profile(profiles_dir, "db", {
        "host": "db.example", "auth": "password", "password_keyring": True,
        "forward": [{"type": "local", "listen": 15432, "to": "127.0.0.1:5432"}]})
    opts = ("--profiles", str(profiles_dir))
    assert run_cli("password", "set", "db", *opts, env=keyring_env,
                   stdin="first\n").returncode == 0
    assert run_cli("password", "set", "db", *opts, env=keyring_env,
                   stdin="second\n").returncode == 0
    assert _entries(keyring_env) == {"sshwrap/db": "second"}
    deleted = run_cli("password", "delete", "db", env=keyring_env)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert _entries(keyring_env) == {}
    again = run_cli("password", "delete", "db", env=keyring_env)
    assert again.returncode == 0 and "no password stored" in again.stdout


@pytest.mark.parametrize(("name", "stdin", "needle"), [
    ("typo", "pw\n", "typo"),  # no such profile
    ("db", "\n", "empty"),
    ("../db", "pw\n", "../db"),
])
def test_password_set_refuses_bad_input_and_stores_nothing(
        profiles_dir: Path, keyring_env: dict[str, str], name: str, stdin: str,
        needle: str) -> None:
    write_profile(profiles_dir, "db", {
        "host": "db.example", "auth": "password", "password_keyring": True,
        "forward": [{"type": "local", "listen": 15432, "to": "127.0.0.1:5432"}]})
    done = run_cli("password", "set", name, "--profiles", str(profiles_dir), env=keyring_env,
                   stdin=stdin)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr.splitlines()[0]
    assert _entries(keyring_env) == {}


@pytest.mark.parametrize(("extra", "message"), [
    ({"auth": "key"}, "needs auth = \"password\""),
    ({"password_env": "DB_PW"}, "choose one"),
    ({"password_keyring": "yes"}, "true or false"),
])
def test_password_keyring_is_validated(extra: dict[str, object], message: str) -> None:
    data: dict[str, object] = {
        "host": "db.example", "auth": "password", "password_keyring": True,
        "forward": [{"type": "local", "listen": 15432, "to": "127.0.0.1:5432"}]}
    data.update(extra)
    with pytest.raises(InvalidInput) as caught:
        parse_profile("db", data, source="db.toml")
    assert any("password_keyring" in line and message in line for line in caught.value.lines())
