"""Labs of the check scenarios: the guides' troubleshooting on real servers (Debian packages)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sshwrap.netlab import HostSpec, NetLab, Service
from sshwrap.netservers import GUIDE_PASSWORD
from tests.netns.lab_client import Client, running_lab

#: The Metawerx guide's path (CLIENT -> GATEWAY sshd, password login -> MYSQL), and a home
#: router whose Dropbear listens on its LAN address only.
SERVER_HOSTS: tuple[HostSpec, ...] = (
    HostSpec("you", ("internet",)),
    HostSpec("gateway", ("internet", "lan"), sshd=True, password_login=True),
    HostSpec("db", ("lan",), services=(Service(3306, "mariadb"),)),
    HostSpec("router", ("internet", "lan"), dropbear="internet"),
)

#: A gateway whose administrator restricts forwarding (sshds added per scenario), a web
#: server behind it, a port on the gateway already taken, and tinyproxy on this side for the
#: remote forwards to offer (the guide's reverse tunnel).
POLICY_HOSTS: tuple[HostSpec, ...] = (
    HostSpec("you", ("internet",), services=(Service(8888, "tinyproxy"),)),
    HostSpec("gateway", ("internet", "lan"), sshd=True,
             services=(Service(9001, "banner", "busy", bind="::"),)),
    HostSpec("web", ("lan",), services=(Service(80, "http"), Service(81, "http"))),
)


#: Services that wait for the client on a database host behind two tunnel hosts: the guide's
#: gateway (OpenSSH, password login) and a router's Dropbear (password login).
QUIET_HOSTS: tuple[HostSpec, ...] = (
    HostSpec("you", ("internet",)),
    HostSpec("gateway", ("internet", "lan"), sshd=True, password_login=True),
    HostSpec("router", ("internet", "lan"), dropbear="internet"),
    HostSpec("db", ("lan",), services=(
        Service(5432, "postgresql", tls=True), Service(6379, "redis"),
        Service(11211, "memcached"), Service(443, "nginx", tls=True))),
)


def build_lab(root: Path, hosts: tuple[HostSpec, ...], *programs: str) -> Iterator[NetLab]:
    with running_lab(root, hosts, *programs) as network:
        yield network


def sshwrap(you: Client, *args: str, password: str | None = None,
            home: Path | None = None) -> tuple[int, str, str]:
    """sshwrap run on 'you', with the password in $CASSIE_PW when given."""
    env = you.env()
    if password is not None:
        env["CASSIE_PW"] = password
    if home is not None:
        env["HOME"] = str(home)
        env.pop("XDG_CONFIG_HOME", None)
    done = you.lab.run("you", [sys.executable, "-m", "sshwrap", *args], env=env, timeout=120)
    return done.returncode, done.stdout, done.stderr


def check(you: Client, name: str, **kwargs: Any) -> tuple[int, dict[str, dict[str, Any]]]:
    """``check NAME --json``: its exit code and its steps by name."""
    code, out, err = sshwrap(you, "check", name, "--json", **kwargs)
    assert out, err
    report = json.loads(out)
    return code, {step["name"]: step for step in report["steps"]}


def failing(steps: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [step for step in steps.values() if not step["ok"]]


def up(you: Client, name: str, password: str | None = GUIDE_PASSWORD) -> None:
    code, _out, err = sshwrap(you, "up", name, password=password)
    assert code == 0, err

