"""``check`` on real servers: MariaDB behind a password gateway (ssh and plink), and a router's
Dropbear that listens on its LAN address only; each verdict before and after the repair."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.netlab import NetLab
from sshwrap.netservers import GUIDE_PASSWORD, GUIDE_USER
from sshwrap.runtime.client.hostkeys import fingerprint
from tests.netns.check_lab import SERVER_HOSTS, build_lab, check, failing, sshwrap, up
from tests.netns.lab_client import Client

pytestmark = pytest.mark.netns

MYSQL = f"""description = "The guide's tunnel: MySQL behind the gateway, as localhost:3307"
host = "gateway"
user = "{GUIDE_USER}"
auth = "password"
password_env = "CASSIE_PW"
restart = "no"
[[forward]]
type = "local"
listen = "localhost:3307"
to = "db:3306"
probe = "banner"
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    yield from build_lab(tmp_path_factory.mktemp("checklab"), SERVER_HOSTS,
                         "mariadbd", "mariadb", "dropbear", "useradd")


def _select_one(lab: NetLab) -> str:
    done = lab.run("you", ["mariadb", "--protocol=TCP", "-h", "127.0.0.1", "-P", "3307",
                           "-u", GUIDE_USER, f"-p{GUIDE_PASSWORD}", "-N", "-e", "SELECT 1"])
    return done.stdout.strip() if done.returncode == 0 else done.stderr.strip()


def test_mariadb_behind_a_password_gateway_down_then_up(lab: NetLab, you: Client) -> None:
    you.write_profile("mysql", MYSQL)
    up(you, "mysql")
    assert _select_one(lab) == "1"
    code, steps = check(you, "mysql", password=GUIDE_PASSWORD)
    assert code == 0, failing(steps)
    auth = steps["authenticate"]
    assert (auth["segment"], auth["ok"]) == ("gateway", True)
    assert "password (from $CASSIE_PW)" in auth["detail"]
    far = steps["far end of local localhost:3307 -> db:3306 (banner)"]
    assert far["segment"] == "server side"
    assert far["detail"].startswith("greeting: 10.") and "MariaDB" in far["detail"]
    assert "5.5.5-" not in far["detail"]
    pid = you.status("mysql")["pid"]

    lab.stop_service("db", 3306)
    try:
        code, steps = check(you, "mysql", password=GUIDE_PASSWORD)
        assert code == 8
        [broken] = failing(steps)
        assert broken["name"] == "far end of local localhost:3307 -> db:3306 (banner)"
        assert broken["segment"] == "server side"
        assert "tunnel host (gateway) cannot reach db:3306" in broken["detail"]
        assert "local localhost:3307 -> db:3306" in broken["detail"]
        assert "Connection refused" in broken["detail"]
    finally:
        lab.start_service("db", 3306)
    # Repaired: the same tunnel passes at once; the old failures are history only.
    code, steps = check(you, "mysql", password=GUIDE_PASSWORD)
    assert code == 0, failing(steps)
    assert "history" in steps["log since this check began"]["detail"]
    assert you.status("mysql")["pid"] == pid
    assert _select_one(lab) == "1"


def test_wrong_password_is_a_gateway_failure_with_password_advice(lab: NetLab,
                                                                  you: Client) -> None:
    you.write_profile("mysql", MYSQL)
    code, steps = check(you, "mysql", password="not-" + GUIDE_PASSWORD)
    auth = steps["authenticate"]
    assert code == 8
    assert (auth["ok"], auth["segment"]) == (False, "gateway")
    assert "tunnel host (gateway) refused authentication as ssh_cassie" in auth["detail"]
    assert "$CASSIE_PW" in auth["hint"]
    assert "authorized_keys" not in auth["hint"] and "agent" not in auth["hint"]
    code, steps = check(you, "mysql", password=GUIDE_PASSWORD)
    assert steps["authenticate"]["ok"], steps["authenticate"]


def test_plink_checks_in_its_private_putty_dir(lab: NetLab, you: Client,
                                               tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    pin = fingerprint(lab.sshd("gateway").host_public_key.split()[1])
    you.write_profile("mysql", MYSQL.replace(
        'restart = "no"\n', f'restart = "no"\nclient = "plink"\nhost_key = "{pin}"\n'))
    code, _out, err = sshwrap(you, "up", "mysql", password=GUIDE_PASSWORD, home=home)
    assert code == 0, err
    code, steps = check(you, "mysql", password=GUIDE_PASSWORD, home=home)
    assert code == 0, failing(steps)
    assert steps["plink installed"]["ok"]
    assert "password (from $CASSIE_PW)" in steps["authenticate"]["detail"]
    assert "MariaDB" in steps["far end of local localhost:3307 -> db:3306 (banner)"]["detail"]
    assert not (home / ".putty").exists() and not (home / ".config" / "putty").exists()
    assert (you.state / "putty").is_dir()


def test_dropbear_on_its_lan_address_passes_the_socks_probe(lab: NetLab, you: Client) -> None:
    router = lab.by_name["router"].addresses["internet"]
    you.write_profile("socks", f"""description = "SOCKS through the home router's Dropbear"
host = "router"
user = "{GUIDE_USER}"
auth = "password"
password_env = "CASSIE_PW"
restart = "no"
[[forward]]
type = "dynamic"
listen = 1080
""")
    up(you, "socks")
    code, steps = check(you, "socks", password=GUIDE_PASSWORD)
    assert code == 0, failing(steps)
    far = steps["far end of dynamic 1080 -> SOCKS (socks)"]
    assert far["detail"].startswith(f"CONNECT {router}:22 via 127.0.0.1:1080: succeeded")
    assert "SSH-2.0-dropbear" in steps["connect to tunnel host (router)"]["detail"]
    # A probe target the router cannot reach fails on the server side, naming it...
    you.write_profile("socks", f"""host = "router"
user = "{GUIDE_USER}"
auth = "password"
password_env = "CASSIE_PW"
restart = "no"
[[forward]]
type = "dynamic"
listen = 1080
probe_target = "db:3307"
""")
    code, steps = check(you, "socks", password=GUIDE_PASSWORD)
    far = steps["far end of dynamic 1080 -> SOCKS (socks)"]
    assert code == 8
    assert (far["ok"], far["segment"]) == (False, "server side")
    assert "db:3307" in far["detail"]
    # ...and one it reaches passes, through the same running tunnel.
    you.write_profile("socks", (you.profiles / "socks.toml").read_text().replace(
        "db:3307", "db:3306"))
    code, steps = check(you, "socks", password=GUIDE_PASSWORD)
    assert code == 0, failing(steps)
