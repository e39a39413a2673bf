"""Real services that wait for the client (PostgreSQL with TLS, Redis, memcached, nginx over
TLS) behind a password gateway's OpenSSH and a router's Dropbear: `up` and `check` call them
healthy, a stopped one dead on the tunnel host's own refusal, and healthy again once started."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.netlab import NetLab
from sshwrap.netservers import GUIDE_PASSWORD, GUIDE_USER
from sshwrap.runtime.client.hostkeys import fingerprint
from tests.netns.check_lab import QUIET_HOSTS, build_lab, check, failing, sshwrap
from tests.netns.lab_client import Client

pytestmark = pytest.mark.netns

#: (listen, the service's port on db, probe, what check says of it when healthy).
SERVICES = [
    (15432, 5432, "banner", r"PostgreSQL, TLS 1\.3 \(CN=db\.probe\.test, O=sshwrap tests, "
                            r"self-signed\)"),
    (16379, 6379, "redis", r"Redis \d+\.\d+\.\d+"),
    (11211, 11211, "banner", r"memcached 1\.\d+\.\d+"),
    (8443, 443, "tls", r"TLS 1\.[23] \(CN=db\.probe\.test, O=sshwrap tests, self-signed\)"),
]


#: The server's refusal of the probe's channel, as each client logs it (OpenSSH and Dropbear
#: give the same reason).
REFUSED = {"ssh": "(connect failed: Connection refused)",
           "plink": "(Connect failed [Connection refused])"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    yield from build_lab(tmp_path_factory.mktemp("quietlab"), QUIET_HOSTS, "dropbear", "plink",
                         "useradd", "postgres", "initdb", "runuser", "psql", "redis-server",
                         "redis-cli", "memcached", "nginx", "openssl")


def _profile(lab: NetLab, host: str, client: str) -> str:
    forwards = "".join(f'[[forward]]\ntype = "local"\nlisten = {listen}\nto = "db:{port}"\n'
                       f'probe = "{probe}"\n' for listen, port, probe, _ in SERVICES)
    plink = ""
    if client == "plink":  # plink has no known_hosts: the host key is pinned
        [key] = [line.split()[2] for line in lab.client.known_hosts.read_text().splitlines()
                 if line.startswith(f"{host} ")]
        plink = f'client = "plink"\nhost_key = "{fingerprint(key)}"\n'
    return (f'host = "{host}"\nuser = "{GUIDE_USER}"\nauth = "password"\n'
            f'password_env = "CASSIE_PW"\nrestart = "no"\n{plink}{forwards}')


def _step(listen: int, port: int, probe: str) -> str:
    return f"far end of local {listen} -> db:{port} ({probe})"


def _real_clients(lab: NetLab) -> tuple[str, str]:
    """psql and redis-cli on 'you', through the tunnel."""
    sql = lab.run("you", ["psql", "-h", "127.0.0.1", "-p", "15432", "-U", "postgres",
                          "-d", "postgres", "-AtX", "-c", "SELECT 1"])
    ping = lab.run("you", ["redis-cli", "-h", "127.0.0.1", "-p", "16379", "PING"])
    return (sql.stdout.strip() or sql.stderr.strip(), ping.stdout.strip() or ping.stderr)


def _healthy(you: Client, name: str, home: Path) -> None:
    code, steps = check(you, name, password=GUIDE_PASSWORD, home=home)
    for listen, port, probe, shown in SERVICES:
        step = steps[_step(listen, port, probe)]
        assert (step["ok"], step["segment"]) == (True, "server side"), step
        assert re.fullmatch(shown, step["detail"]), step
    assert code == 0, failing(steps)


@pytest.mark.parametrize(("host", "client"),
                         [("gateway", "ssh"), ("router", "ssh"), ("router", "plink")])
def test_quiet_services_healthy_stopped_and_started_again(lab: NetLab, you: Client,
                                                          tmp_path: Path, host: str,
                                                          client: str) -> None:
    home = tmp_path / "home"  # plink's ~/.putty must stay untouched
    home.mkdir()
    you.write_profile("db", _profile(lab, host, client))
    code, _out, err = sshwrap(you, "up", "db", password=GUIDE_PASSWORD, home=home)
    assert code == 0, err
    row = you.status("db")
    assert (row["state"], row["healthy"]) == ("up", True), row
    assert _real_clients(lab) == ("1", "PONG")
    _healthy(you, "db", home)

    for _, port, _, _ in SERVICES:
        lab.stop_service("db", port)
    try:
        code, steps = check(you, "db", password=GUIDE_PASSWORD, home=home)
        assert code == 8
        for listen, port, probe, _ in SERVICES:
            far = steps[_step(listen, port, probe)]
            assert (far["ok"], far["segment"]) == (False, "server side"), far
            assert f"tunnel host ({host}) cannot reach db:{port}" in far["detail"], far
            assert REFUSED[client] in far["detail"], far
            # Judged on the client's own "open failed" for this probe's channel (plink:
            # "Forwarded connection refused by remote"), not on silence.
            assert "[this check's probe: " in far["detail"], far
        # The tunnel itself stays up and healthy: only the services behind it are down.
        assert you.status("db")["healthy"] is True
    finally:
        for _, port, _, _ in SERVICES:
            lab.start_service("db", port)
    _healthy(you, "db", home)
    assert _real_clients(lab) == ("1", "PONG")
    code, _out, err = sshwrap(you, "down", "db", home=home)
    assert code == 0, err
    assert not (home / ".putty").exists() and not (home / ".config").exists()
    # What the probes left in the servers' own logs: no error, no broken handshake.
    for port, server in lab.by_name["db"].programs.items():
        text = server.log.read_text(errors="replace")
        for word in ("ERROR", "FATAL", "invalid", "[error]", "[crit]", "Protocol error"):
            assert word not in text, f"{server.name} on {port}: {word!r} in its log:\n{text}"
