#!/usr/bin/env python3
"""Benchmark failure detection and recovery (as root): sshwrap against autossh, on a cut link.

A two-host lab (network namespaces): `you` runs the tunnel to `server`, whose service listens
on its own loopback. For each contender the link is cut, and we time (1) from the cut until the
tool shows it noticed (sshwrap: `status` leaves `up`; autossh: its ssh child exits), and (2) from
the link's return until bytes pass through the forward again. All runs happen here, in one go.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from sshwrap.netlab import HostSpec, NetLab, Service, can_run

CAP = 90.0  # seconds after which a measurement is reported as "> CAP"
SERVICE_PORT = 7000
LISTEN = 17000
HOSTS = (
    HostSpec("you", ("lan",)),
    HostSpec("server", ("lan",), sshd=True,
             services=(Service(SERVICE_PORT, "banner", "bench-service", bind="127.0.0.1"),)),
)


def poll(condition: Callable[[], bool], cap: float = CAP, every: float = 0.1) -> float | None:
    """Seconds until ``condition`` holds, or None past ``cap``."""
    start = time.monotonic()
    while time.monotonic() - start < cap:
        if condition():
            return time.monotonic() - start
        time.sleep(every)
    return None


class Lab:
    def __init__(self, lab: NetLab, root: Path) -> None:
        self.lab = lab
        self.root = root
        self.env = dict(os.environ, SSHWRAP_PROFILES=str(root / "profiles"),
                        SSHWRAP_STATE_DIR=str(root / "state"))
        (root / "profiles").mkdir()
        (root / "profiles" / "bench.toml").write_text(
            f'host = "server"\n[[forward]]\ntype = "local"\nlisten = {LISTEN}\n'
            f'to = "localhost:{SERVICE_PORT}"\n')

    def bytes_pass(self) -> bool:
        code = ("import socket,sys\ntry:\n s=socket.create_connection(('127.0.0.1',"
                f"{LISTEN}),timeout=1)\n s.settimeout(1)\n"
                " sys.exit(0 if s.recv(32).startswith(b'bench') else 1)\n"
                "except OSError:\n sys.exit(1)\n")
        return self.lab.run("you", [sys.executable, "-c", code], timeout=10).returncode == 0

    def sshwrap(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run("you", [sys.executable, "-m", "sshwrap", *args], env=self.env)

    def cut(self, up: bool) -> None:
        self.lab.set_link("you", "lan", up)


def measure(lab: Lab, noticed: Callable[[], bool]) -> tuple[float | None, float | None]:
    lab.cut(False)
    try:
        notice = poll(noticed)
        time.sleep(2)  # the link stays down a little longer, as in a real outage
    finally:
        lab.cut(True)
    recover = poll(lab.bytes_pass)
    return notice, recover


def bench_sshwrap(lab: Lab) -> tuple[float | None, float | None]:
    started = lab.sshwrap("up", "bench")
    if started.returncode != 0:
        raise SystemExit(f"sshwrap up failed: {started.stderr}")

    def noticed() -> bool:
        rows = json.loads(lab.sshwrap("status", "bench", "--json").stdout or "[]")
        return bool(rows) and rows[0]["state"] != "up"

    try:
        return measure(lab, noticed)
    finally:
        lab.sshwrap("down", "--all")


@contextlib.contextmanager
def autossh(lab: Lab, args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    config = str(lab.lab.client.ssh_config)
    argv = ["autossh", *args, "-N", "-F", config, "-o", "ExitOnForwardFailure=yes",
            "-L", f"127.0.0.1:{LISTEN}:localhost:{SERVICE_PORT}", "server"]
    proc = subprocess.Popen(lab.lab.exec_argv("you", argv), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(10)


def ssh_child(proc: subprocess.Popen[bytes]) -> int | None:
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            if child.name() == "ssh":
                return child.pid
    return None


def bench_autossh(lab: Lab, args: list[str]) -> tuple[float | None, float | None]:
    env = dict(os.environ, AUTOSSH_GATETIME="0")
    with autossh(lab, args, env) as proc:
        if poll(lab.bytes_pass, cap=20) is None:
            raise SystemExit("autossh did not bring the tunnel up")
        first = ssh_child(proc)
        return measure(lab, lambda: ssh_child(proc) != first)


def fmt(value: float | None) -> str:
    return f"> {CAP:.0f} s" if value is None else f"{value:.1f} s"


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    reason = can_run()
    if reason:
        print(f"bench_reconnect: {reason}", file=sys.stderr)
        return 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="sshwrap-bench-") as tmp, \
            NetLab(Path(tmp) / "lab", hosts=HOSTS) as net:
        lab = Lab(net, Path(tmp))
        rows.append(("sshwrap (defaults: keepalive 3 s x 2)", *bench_sshwrap(lab)))
        rows.append(("autossh -M 0, ServerAliveInterval 3, CountMax 2",
                     *bench_autossh(lab, ["-M", "0", "-o", "ServerAliveInterval=3",
                                          "-o", "ServerAliveCountMax=2"])))
        rows.append(("autossh defaults (-M 20000)", *bench_autossh(lab, ["-M", "20000"])))
    print("| tool | cut -> noticed | link back -> bytes pass |")
    print("| --- | --- | --- |")
    for name, notice, recover in rows:
        print(f"| {name} | {fmt(notice)} | {fmt(recover)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
