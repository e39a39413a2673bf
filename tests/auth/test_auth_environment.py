"""No profile's secret reaches another tunnel: every ssh or plink client sshwrap starts gets
an allow-listed environment; the processes that hold passwords cannot be read or dumped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.core.model import AuthMethod, Profile
from sshwrap.errors import InvalidInput
from sshwrap.runtime.client.auth import ASKPASS_ENV, secret_for
from sshwrap.runtime.system import state
from sshwrap.runtime.system.detach import CLIENT_ENVIRONMENT
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, Sshd, free_port
from tests.auth.auth_helpers import PasswordServer, run_cli, write_profile

pytestmark = pytest.mark.sshd

#: What a client may find in its environment: the allow-list and its own askpass channel.
CLIENT_MAY_HAVE = CLIENT_ENVIRONMENT | set(ASKPASS_ENV)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def _status(profiles_dir: Path) -> dict[str, dict[str, object]]:
    done = run_cli("status", "--json", "--profiles", str(profiles_dir))
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def _key_profile(sshd: Sshd, target: int) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "restart": "no",
            "ssh_config_file": str(sshd.client.ssh_config),
            "forward": [{"type": "local", "listen": free_port(), "to": f"127.0.0.1:{target}"}]}


@pytest.mark.usefixtures("stop_all")
def test_a_password_reaches_no_other_tunnels_client(sshd: Sshd, password_server: PasswordServer,
                                                    profiles_dir: Path) -> None:
    """``VAR=secret sshwrap up k1 pw2``, where only pw2 names VAR: neither client keeps VAR,
    nor anything outside the allow-list (a stray variable of the shell included)."""
    with BannerServer() as target:
        write_profile(profiles_dir, "k1", _key_profile(sshd, target.port))
        write_profile(profiles_dir, "pw2", {
            "host": "127.0.0.1", "port": password_server.sshd.port,
            "user": password_server.user, "auth": "password", "password_env": "PW2_SECRET",
            "ssh_config_file": str(password_server.ssh_config), "restart": "no",
            "forward": [{"type": "local", "listen": free_port(),
                         "to": f"127.0.0.1:{target.port}"}]})
        env = dict(os.environ, PW2_SECRET=password_server.password, SHELL_STRAY="stray-value")
        done = run_cli("up", "k1", "pw2", "--profiles", str(profiles_dir), env=env)
        assert done.returncode == 0, done.stderr
        rows = _status(profiles_dir)
        for name in ("k1", "pw2"):
            environ = _environ(int(str(rows[name]["pid"])))
            assert "PW2_SECRET" not in environ, name
            assert password_server.password not in "".join(environ.values()), name
            assert set(environ) <= CLIENT_MAY_HAVE, (name, set(environ) - CLIENT_MAY_HAVE)
            assert environ.get("PATH") == os.environ["PATH"], name
        assert "SSH_ASKPASS" in _environ(int(str(rows["pw2"]["pid"])))


def _unprivileged(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run as this user without any capability, as a user who is not root runs it,
    and allowed core files of any size."""
    return subprocess.run(["prlimit", "--core=unlimited", "setpriv", "--inh-caps=-all",
                           "--bounding-set=-all", *argv], capture_output=True, text=True,
                          check=False, timeout=120)


def test_the_engine_is_not_dumpable_and_dumps_no_core(sshd: Sshd, profiles_dir: Path,
                                                      state_dir: Path) -> None:
    """The engine holds passwords: no core file, and nothing of its memory or environment
    for the user's other processes; what an identity check or ``ps`` reads stays readable."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("prlimit"):
        pytest.skip("needs root, setpriv and prlimit to run sshwrap as a user without privileges")
    with BannerServer() as target:
        write_profile(profiles_dir, "k1", _key_profile(sshd, target.port))
        try:
            done = _unprivileged(sys.executable, "-m", "sshwrap", "up", "k1", "--profiles",
                                 str(profiles_dir))
            assert done.returncode == 0, done.stderr
            record = state.read_record(StatePaths(state_dir), "k1")
            assert record is not None
            engine = record.supervisor_pid
            limits = Path(f"/proc/{engine}/limits").read_text().splitlines()
            core = next(line for line in limits if line.startswith("Max core file size"))
            assert core.split()[4] == "0", core
            # Non-dumpable: its environ needs ptrace rights over it, which the user's other
            # processes then lack...
            hidden = _unprivileged("cat", f"/proc/{engine}/environ")
            assert hidden.returncode != 0 and "Permission denied" in hidden.stderr, hidden
            # ... while what identity checks read stays readable to them,
            probe = ("import sys; from sshwrap.runtime.system.identity import identified; "
                     "print(identified(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]) "
                     "is not None)")
            seen = _unprivileged(sys.executable, "-c", probe, str(engine),
                                 repr(record.supervisor_create_time), *record.supervisor_argv)
            assert seen.stdout.strip() == "True", seen
            # ... and its client, a program of its own, is dumpable again: the engine reads
            # its sockets.
            assert _unprivileged("ls", f"/proc/{record.pid}/fd").returncode == 0
            status = _unprivileged(sys.executable, "-m", "sshwrap", "status", "k1", "--json",
                                   "--profiles", str(profiles_dir))
            assert json.loads(status.stdout)[0]["state"] == "up", status
        finally:
            run_cli("down", "--all", "--profiles", str(profiles_dir))


def test_the_askpass_server_makes_its_process_private(tmp_path: Path) -> None:
    """Whatever process serves a secret (check, the Python API) is made non-dumpable."""
    code = ("import ctypes, resource, sys\n"
            "from pathlib import Path\n"
            "from sshwrap.runtime.client.auth import SecretServer\n"
            "with SecretServer('s3cret', root=Path(sys.argv[1])):\n"
            "    dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"
            "    print(dumpable, resource.getrlimit(resource.RLIMIT_CORE)[0])\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.stdout.split() == ["0", "0"], done.stderr


@pytest.mark.parametrize("name", ["SSH_AUTH_SOCK", "HOME", "PYTHONPATH"])
def test_a_password_variable_that_every_client_gets_is_refused(name: str) -> None:
    profile = Profile(name="p", host="h", auth=AuthMethod.PASSWORD, password_env=name,
                      source="p.toml")
    with pytest.raises(InvalidInput) as caught:
        secret_for(profile, environ={name: "s3cret"})
    assert caught.value.problems[0].key == "password_env"
    assert "s3cret" not in str(caught.value)


def test_short_lived_ssh_programs_start_from_the_allow_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ssh -O``, ``ssh -G`` and ssh-keyscan run briefly: programs of those names on PATH
    write down the environment they were given."""
    from sshwrap.runtime.client import hostkeys
    from sshwrap.runtime.supervise import shared
    from sshwrap.usecases import check_gateway

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("ssh", "ssh-keyscan"):
        script = bin_dir / program
        script.write_text(f"#!/bin/sh\nenv > {tmp_path}/{program}.$$.env\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("OTHER_PW", "s3cret")
    profile = Profile(name="p", host="h", source="p.toml")
    shared.mux(tmp_path / "ctl", "check")
    hostkeys.keyscan("127.0.0.1", 1)
    hostkeys.effective_settings(profile, "h", None, None)
    check_gateway._effective_endpoint(profile, str(bin_dir / "ssh"), "h", None)
    dumps = sorted(tmp_path.glob("*.env"))
    assert len(dumps) == 4
    for dump in dumps:
        names = {line.partition("=")[0] for line in dump.read_text().splitlines()}
        assert "OTHER_PW" not in names, dump.name
        assert names <= CLIENT_ENVIRONMENT | {"PWD", "SHLVL", "_"}, names - CLIENT_ENVIRONMENT
