#!/usr/bin/env python3
"""Benchmark recovery from an address change (as root): sshwrap, sshwrap without its network
watch (the behaviour before it: keep-alive, then backoff), both on a shared connection too,
and autossh.

A two-host lab (network namespaces): `you` runs the tunnel to `server`. In each run the
client's address is removed, and after a pause (a laptop between two networks) another one is
added on the same segment; we time from the new address's appearance until bytes pass through
the forward again. Each contender runs --runs times; medians and spread are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# The lab parts are shared with the cut-link benchmark, next to this script.
from bench_reconnect import (
    CAP,
    HOSTS,
    LISTEN,
    SERVICE_PORT,
    Lab,
    poll,
)

from sshwrap.netlab import NetLab, can_run

#: How long the machine has no address, as when moving between two networks.
GAP = 1.0


class AddressLab(Lab):
    def __init__(self, lab: NetLab, root: Path) -> None:
        super().__init__(lab, root)
        self.original = lab.by_name["you"].addresses["lan"]
        self.prefix = self.original.rsplit(".", 1)[0]
        self.current = self.original
        self.serial = 100

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.lab.by_name["you"].netns, *args], check=True)

    def change_address(self) -> float | None:
        """Remove the address, wait GAP, add a new one: seconds until bytes pass again."""
        self.serial += 1
        new = f"{self.prefix}.{self.serial}"
        self.ip("addr", "del", f"{self.current}/24", "dev", "eth0")
        time.sleep(GAP)
        self.ip("addr", "add", f"{new}/24", "dev", "eth0")
        self.current = new
        return poll(self.bytes_pass, every=0.05)

    def restore(self) -> None:
        self.ip("addr", "flush", "dev", "eth0")
        self.ip("addr", "add", f"{self.original}/24", "dev", "eth0")
        self.current = self.original


def settle(lab: AddressLab) -> None:
    """Between runs: bytes pass, and a little longer, so that the next cut finds it idle."""
    if poll(lab.bytes_pass, cap=CAP) is None:
        raise SystemExit("the tunnel did not come back between runs")
    time.sleep(1.0)


def bench_sshwrap(lab: AddressLab, runs: int, watch: bool,
                  shared: bool = False) -> list[float | None]:
    lab.env["SSHWRAP_NETWATCH"] = "1" if watch else "0"
    profile = lab.root / "profiles" / "bench.toml"
    text = profile.read_text().replace("share_connection = true\n", "")
    profile.write_text(("share_connection = true\n" if shared else "") + text)
    started = lab.sshwrap("up", "bench")
    if started.returncode != 0:
        raise SystemExit(f"sshwrap up failed: {started.stderr}")
    times = []
    try:
        for _ in range(runs):
            settle(lab)
            times.append(lab.change_address())
    finally:
        lab.sshwrap("down", "--all")
        lab.restore()
    return times


@contextlib.contextmanager
def autossh(lab: AddressLab, args: list[str]) -> Iterator[None]:
    env = dict(os.environ, AUTOSSH_GATETIME="0")
    argv = ["autossh", *args, "-N", "-F", str(lab.lab.client.ssh_config),
            "-o", "ExitOnForwardFailure=yes",
            "-L", f"127.0.0.1:{LISTEN}:localhost:{SERVICE_PORT}", "server"]
    proc = subprocess.Popen(lab.lab.exec_argv("you", argv), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(10)
        lab.restore()


def bench_autossh(lab: AddressLab, runs: int, args: list[str]) -> list[float | None]:
    with autossh(lab, args):
        times = []
        for _ in range(runs):
            settle(lab)
            times.append(lab.change_address())
    return times


def summary(times: list[float | None]) -> str:
    done = sorted(t for t in times if t is not None)
    missed = len(times) - len(done)
    if not done:
        return f"> {CAP:.0f} s in every run"
    text = (f"{statistics.median(done):.2f} s (min {done[0]:.2f}, max {done[-1]:.2f}, "
            f"n={len(done)})")
    return text + (f", {missed} over {CAP:.0f} s" if missed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = can_run()
    if reason:
        print(f"bench_netchange: {reason}", file=sys.stderr)
        return 3
    contenders: list[tuple[str, Callable[[AddressLab], list[float | None]]]] = [
        ("sshwrap (network watch, keepalive 3 s x 2)",
         lambda lab: bench_sshwrap(lab, args.runs, watch=True)),
        ("sshwrap without the watch (SSHWRAP_NETWATCH=0: keep-alive, then backoff)",
         lambda lab: bench_sshwrap(lab, args.runs, watch=False)),
        ("sshwrap on a shared connection (network watch)",
         lambda lab: bench_sshwrap(lab, args.runs, watch=True, shared=True)),
        ("sshwrap on a shared connection without the watch",
         lambda lab: bench_sshwrap(lab, args.runs, watch=False, shared=True)),
        ("autossh -M 0, ServerAliveInterval 3, CountMax 2",
         lambda lab: bench_autossh(lab, args.runs, ["-M", "0", "-o", "ServerAliveInterval=3",
                                                    "-o", "ServerAliveCountMax=2"])),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="sshwrap-bench-") as tmp, \
            NetLab(Path(tmp) / "lab", hosts=HOSTS) as net:
        lab = AddressLab(net, Path(tmp))
        for name, run in contenders:
            rows.append((name, summary(run(lab))))
    print(f"new address -> bytes pass again ({args.runs} runs each; no address for {GAP:g} s)")
    print("| tool | median (min, max) |")
    print("| --- | --- |")
    for name, text in rows:
        print(f"| {name} | {text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
