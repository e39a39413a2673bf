"""Jump hosts get the tunnel's host-key policy and prompt settings (network namespaces, root)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.knownhosts import known_hosts_name
from sshwrap.core.model import Profile
from sshwrap.core.parse import parse_profile
from sshwrap.errors import InvalidInput
from sshwrap.netlab import ANY_ADDRESS, HostSpec, NetLab, Service
from sshwrap.runtime.client.auth import hop_options
from sshwrap.runtime.client.hostkeys import fingerprint
from sshwrap.runtime.client.launch import (
    client_config_text,
    write_client_config,
)
from sshwrap.sandbox import Sshd, free_port
from tests.auth.auth_helpers import PasswordServer
from tests.netns.lab_client import Client, lab_client, running_lab

TARGET_PORT = 7000
#: A client host, two jump hosts (one takes only passwords) and a tunnel host behind them.
JUMP_HOSTS: tuple[HostSpec, ...] = (
    HostSpec("you", ("outside",)),
    HostSpec("gate", ("outside", "inside"), sshd=True),
    HostSpec("pwgate", ("outside", "inside"), sshd=True),
    HostSpec("target", ("inside",), sshd=True,
             services=(Service(TARGET_PORT, "banner", "220 behind-the-gate"),)),
)


# -- the generated client config, without processes -------------------------------------

FACTS = HostFacts(ipv6_loopback=True)


def _profile(**keys: object) -> Profile:
    data: dict[str, object] = {"host": "db.example", "jump": ["bastion"],
                               "forward": [{"type": "local", "listen": 5432,
                                            "to": "localhost:5432"}]}
    data.update(keys)
    return parse_profile("db", data, source="db.toml")


def test_client_config_puts_hop_options_before_the_users_config() -> None:
    profile = _profile(ssh_config_file="/etc/custom/ssh_config", host_key="accept-new")
    text = client_config_text(profile, hop_options(profile, answers_prompts=False))
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["StrictHostKeyChecking accept-new", "BatchMode yes",
                     'Include "/etc/custom/ssh_config"']


def test_client_config_without_a_profile_config_includes_the_user_and_system_files() -> None:
    profile = _profile(auth="password", password_env="DB_PW")  # noqa: S106 - a name
    text = client_config_text(profile, hop_options(profile, answers_prompts=True))
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["StrictHostKeyChecking yes", "NumberOfPasswordPrompts 1",
                     "PasswordAuthentication yes", 'Include "~/.ssh/config"',
                     'Include "/etc/ssh/ssh_config"']


def test_client_config_refuses_what_it_cannot_include_safely(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = _profile(ssh_config_file="cfg")
    monkeypatch.chdir(tmp_path)  # a relative config is resolved as ssh -F would
    assert f'Include "{tmp_path}/cfg"' in client_config_text(profile, [])
    with pytest.raises(ValueError, match="not an option"):
        client_config_text(profile, [("ProxyCommand", "sh -c x")])
    unsafe_state = tmp_path / "state with space"
    with pytest.raises(InvalidInput, match="SSHWRAP_STATE_DIR"):
        write_client_config(profile, unsafe_state, [])


def test_config_file_replaces_the_profiles_and_appears_once(tmp_path: Path) -> None:
    path = write_client_config(_profile(), tmp_path, [("BatchMode", "yes")])
    assert path == tmp_path / "client" / "db.conf"
    assert path.stat().st_mode & 0o777 == 0o600
    spec = LaunchSpec(client_config=str(path))
    for profile in (replace(_profile(), ssh_config_file="/u/cfg"), _profile()):
        argv = compile_ssh(profile, FACTS, spec=spec)
        assert argv.count("-F") == 1 and argv[argv.index("-F") + 1] == str(path)
        assert argv.index("-F") < argv.index("-J")


def test_plink_hops_get_their_pinned_keys_inside_the_proxy_command() -> None:
    from sshwrap.core.compile.plink import proxy_command

    profile = _profile(client="plink", host_key="SHA256:" + "A" * 43,
                       jump=["u@one", "two:2222"])
    command = proxy_command(profile, "plink", [["SHA256:" + "B" * 43], ["SHA256:" + "C" * 43]])
    assert command is not None
    outer = shlex.split(command)
    assert outer[outer.index("-hostkey") + 1] == "SHA256:" + "C" * 43
    inner = shlex.split(outer[outer.index("-proxycmd") + 1])
    assert inner[inner.index("-hostkey") + 1] == "SHA256:" + "B" * 43
    assert inner[-1] == "one" and inner[inner.index("-l") + 1] == "u"


# -- against real sshds behind a jump host -----------------------------------------------

lab_only = pytest.mark.netns


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory,
        password_server: PasswordServer) -> Iterator[NetLab]:
    with running_lab(tmp_path_factory.mktemp("jumplab"), JUMP_HOSTS) as network:
        # pwgate takes only passwords, from the throwaway user of the password tests
        host = network.by_name["pwgate"]
        assert host.sshd is not None
        host.sshd.stop()
        host.sshd = Sshd(host.sshd.root, network.client, host=ANY_ADDRESS, port=22,
                         netns=host.netns, trust_client=False, user=password_server.user,
                         extra_config={"PasswordAuthentication": "yes",
                                       "PubkeyAuthentication": "no"})
        host.sshd.start()
        yield network


@pytest.fixture
def you(lab: NetLab, tmp_path: Path) -> Iterator[Client]:
    with lab_client(lab, tmp_path) as client:
        yield client


def _host_key_line(lab: NetLab, host: str) -> str:
    return f"{known_hosts_name(host, 22)} {lab.sshd(host).host_public_key}\n"


def _ssh_config(lab: NetLab, tmp_path: Path, *trusted: str) -> tuple[Path, Path]:
    """A config with the lab's key and a known_hosts of its own holding ``trusted`` hosts.

    It refuses passwords, as many users' configs do: only sshwrap's own options, placed
    before it, can turn them on for a hop.
    """
    known = tmp_path / "known_hosts"
    known.write_text("".join(_host_key_line(lab, host) for host in trusted))
    known.chmod(0o600)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    IdentityFile {lab.client.key}\n    IdentitiesOnly yes\n"
                      f"    UserKnownHostsFile {known}\n    GlobalKnownHostsFile /dev/null\n"
                      "    PasswordAuthentication no\n    UpdateHostKeys no\n")
    return config, known


def _tunnel(config: Path | None, listen: int, **keys: object) -> dict[str, object]:
    data: dict[str, object] = {
        "host": "target", "jump": ["gate"], "restart": "no",
        "forward": [{"type": "local", "listen": listen, "to": f"127.0.0.1:{TARGET_PORT}"}]}
    if config is not None:
        data["ssh_config_file"] = str(config)
    data.update(keys)
    return data


def _banner(lab: NetLab, port: int) -> str:
    code = ("import socket, sys\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
            "print(s.recv(100).decode().strip())\n")
    result = lab.run("you", ["python3", "-c", code, str(port)], timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _up(you: Client, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    return you.sshwrap("up", name, env=env, timeout=90)


@lab_only
def test_unknown_hop_key_with_strict_fails_naming_the_hop(lab: NetLab, you: Client,
                                                          tmp_path: Path) -> None:
    config, known = _ssh_config(lab, tmp_path, "target")
    before = known.read_bytes()
    you.write_profile("strict", _toml(_tunnel(config, free_port())))
    done = _up(you, "strict")
    assert done.returncode == 4, done.stderr
    assert "jump host 1 (gate)" in done.stderr
    assert known.read_bytes() == before
    conf = (you.state / "client" / "strict.conf").read_text()
    assert conf.splitlines()[1:3] == ["StrictHostKeyChecking yes", "BatchMode yes"]


@lab_only
def test_accept_new_adds_the_hop_key_on_first_use(lab: NetLab, you: Client,
                                                  tmp_path: Path) -> None:
    config, known = _ssh_config(lab, tmp_path)
    listen = free_port()
    you.write_profile("tofu", _toml(_tunnel(config, listen, host_key="accept-new")))
    first = _up(you, "tofu")
    assert first.returncode == 0, first.stderr
    assert _banner(lab, listen) == "220 behind-the-gate"
    names = {line.split()[0] for line in known.read_text().splitlines()}
    assert names == {"gate", "target"}
    argv = psutil.Process(you.status("tofu")["pid"]).cmdline()
    assert argv.count("-F") == 1  # the generated config took the profile's place
    assert argv[argv.index("-F") + 1] == str(you.state / "client" / "tofu.conf")
    assert you.sshwrap("down", "tofu").returncode == 0
    again = _up(you, "tofu")
    assert again.returncode == 0, again.stderr
    assert {line.split()[0] for line in known.read_text().splitlines()} == names


@lab_only
def test_pinned_tunnel_host_behind_a_jump_host(lab: NetLab, you: Client,
                                               tmp_path: Path) -> None:
    config, known = _ssh_config(lab, tmp_path, "gate")
    pin = fingerprint(lab.sshd("target").host_public_key.split()[1])
    listen = free_port()
    you.write_profile("pinned", _toml(_tunnel(config, listen, host_key=pin)))
    done = _up(you, "pinned")
    assert done.returncode == 0, done.stderr
    assert _banner(lab, listen) == "220 behind-the-gate"
    assert "target" not in known.read_text()  # the pin lives in sshwrap's state only

    you.write_profile("wrongpin", _toml(_tunnel(config, free_port(),
                                                host_key="SHA256:" + "B" * 43)))
    wrong = _up(you, "wrongpin")
    assert wrong.returncode == 4, wrong.stderr
    assert "pinned" in wrong.stderr


def _secret_nowhere(secret: str, *folders: Path) -> None:
    needle = secret.encode()
    for proc in psutil.process_iter():
        for part in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{proc.pid}/{part}").read_bytes()
            except OSError:
                continue
            assert needle not in data, f"the secret is in /proc/{proc.pid}/{part}"
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the secret is in {path}"


@lab_only
def test_password_hop(lab: NetLab, you: Client, tmp_path: Path,
                      password_server: PasswordServer) -> None:
    config, _known = _ssh_config(lab, tmp_path, "pwgate", "target")
    sshd_log = lab.sshd("pwgate").log_path
    listen = free_port()
    profile = _tunnel(config, listen, jump=[f"{password_server.user}@pwgate"],
                      auth="password", password_env="TUNNEL_PW")  # noqa: S106
    you.write_profile("pwhop", _toml(profile))
    done = _up(you, "pwhop", TUNNEL_PW=password_server.password)
    assert done.returncode == 0, done.stderr
    assert _banner(lab, listen) == "220 behind-the-gate"
    assert f"Accepted password for {password_server.user}" in sshd_log.read_text()
    _secret_nowhere(password_server.password, you.state)

    failed_before = sshd_log.read_text().count(f"Failed password for {password_server.user} ")
    you.write_profile("pwwrong", _toml({**profile, "forward": [
        {"type": "local", "listen": free_port(), "to": f"127.0.0.1:{TARGET_PORT}"}]}))
    wrong = _up(you, "pwwrong", TUNNEL_PW="not-the-password")
    assert wrong.returncode == 4, wrong.stderr
    assert "jump host 1" in wrong.stderr and "pwgate" in wrong.stderr
    failed = sshd_log.read_text().count(f"Failed password for {password_server.user} ")
    assert failed - failed_before == 1  # NumberOfPasswordPrompts=1 reached the hop


@lab_only
@pytest.mark.plink
@pytest.mark.skipif(shutil.which("puttygen") is None, reason="putty-tools is not installed")
def test_plink_through_a_jump_host(lab: NetLab, you: Client, tmp_path: Path) -> None:
    ppk = tmp_path / "client.ppk"
    subprocess.run(["puttygen", str(lab.client.key), "-O", "private", "-o", str(ppk)],
                   check=True, capture_output=True)
    user = lab.sshd("target").user
    listen = free_port()
    # the jump host's key comes from the known_hosts of the lab's system ssh_config on 'you'
    profile = _tunnel(None, listen, client="plink", user=user, jump=[f"{user}@gate"],
                      identity_file=str(ppk),
                      host_key=fingerprint(lab.sshd("target").host_public_key.split()[1]))
    you.write_profile("plinkjump", _toml(profile))
    done = _up(you, "plinkjump")
    assert done.returncode == 0, done.stderr
    assert _banner(lab, listen) == "220 behind-the-gate"
    gate = fingerprint(lab.sshd("gate").host_public_key.split()[1])
    cmdline = " ".join(psutil.Process(you.status("plinkjump")["pid"]).cmdline())
    assert f"-hostkey {gate}" in cmdline


def _toml(data: dict[str, object]) -> str:
    import tomli_w

    return tomli_w.dumps(data)
