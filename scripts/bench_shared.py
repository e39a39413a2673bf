#!/usr/bin/env python3
"""Benchmark shared connections in one run on a private sshd; prints a Markdown table.

Measured: `sshwrap up` of N profiles with one local forward each to one host, each on its own
ssh process and then all on one shared ControlMaster (`up --share`): wall time to verified-ready
and the total RSS of the ssh processes (and, for a fair total, of the supervisors); and the
cost of adding one forward to a running master with `ssh -O forward` against starting a new
ssh process for it.
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
from pathlib import Path

import psutil

# Run as a script, this folder is on sys.path: share the runtime benchmark's harness.
from bench_runtime import Bench, kill_raw, private_sshd

from sshwrap.runtime.supervise import shared
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths

#: Every process of sshwrap's own runs ``python -m sshwrap --engine ...``
#: (runtime/system/detach.py).
SUPERVISOR_MARKERS = ("--engine",)


def rss_of(port: int, state_dir: str) -> tuple[int, int, int]:
    """Total RSS of the ssh processes reaching ``port`` and of sshwrap's own processes of
    ``state_dir`` (not another state dir's engine), and how many ssh processes there are."""
    ssh_total = supervisors = count = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            argv = proc.info["cmdline"] or []
            if proc.info["name"] == "ssh" and str(port) in argv:
                ssh_total += proc.memory_info().rss
                count += 1
            elif any(marker in argv for marker in SUPERVISOR_MARKERS) \
                    and proc.environ().get("SSHWRAP_STATE_DIR") == state_dir:
                supervisors += proc.memory_info().rss
    return ssh_total, supervisors, count


def raw_shared(bench: Bench, ports: list[int], control: Path) -> float:
    """What sshwrap's shared ``up`` is held against: ``ssh -M -f -N`` then one
    ``ssh -O forward`` per forward, by hand; the seconds it takes."""
    sshd = bench.sshd
    start = time.perf_counter()
    subprocess.run(["ssh", "-M", "-S", str(control), "-f", "-N", "-F",
                    str(sshd.client.ssh_config), "-o", "BatchMode=yes", "-p", str(sshd.port),
                    "-l", sshd.user, "127.0.0.1"], check=True)
    for port in ports:
        subprocess.run(["ssh", "-S", str(control), "-O", "forward", "-L",
                        f"127.0.0.1:{port}:127.0.0.1:{bench.target.port}", "127.0.0.1"],
                       check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    subprocess.run(["ssh", "-S", str(control), "-O", "exit", "127.0.0.1"], check=False,
                   capture_output=True)
    return elapsed


def timed_up(bench: Bench, *args: str) -> float:
    start = time.perf_counter()
    bench.sshwrap("up", "--tag", "bench", "--wait", "120", *args)
    return time.perf_counter() - start


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def per_forward_cost(bench: Bench, control: Path, samples: int) -> tuple[list[float],
                                                                          list[float]]:
    """Seconds to add one forward to the running master, and to start a new ssh for it."""
    adds, spawns = [], []
    for _ in range(samples):
        port = bench.port()
        spec = ["-L", f"127.0.0.1:{port}:127.0.0.1:{bench.target.port}"]
        start = time.perf_counter()
        if shared.mux(control, "forward", spec).returncode != 0:
            raise SystemExit("ssh -O forward failed")
        adds.append(time.perf_counter() - start)
        shared.mux(control, "cancel", spec)
        start = time.perf_counter()
        subprocess.run(bench.raw_ssh(port), check=True)
        spawns.append(time.perf_counter() - start)
        kill_raw(port)
    return adds, spawns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forwards", type=int, default=50, help="profiles (one forward each)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="shared up against raw ssh -M plus -O forward, in turns")
    parser.add_argument("--samples", type=int, default=20,
                        help="single-forward additions timed for the per-forward cost")
    args = parser.parse_args()
    count = args.forwards
    with tempfile.TemporaryDirectory(prefix="sshwrap-bench-") as tmp, \
            private_sshd(Path(tmp)) as bench:
        sshd = bench.sshd
        state_dir = bench.env["SSHWRAP_STATE_DIR"]
        for i in range(count):
            bench.profile(f"fwd{i:03d}", bench.port(), '"bench"', ipv4_only=True)

        separate = timed_up(bench)
        separate_ssh, separate_sup, separate_n = rss_of(sshd.port, state_dir)
        bench.sshwrap("down", "--all")

        raws, sharing = [], []
        for _ in range(args.rounds):  # in turns: a change in load weighs on both
            raws.append(raw_shared(bench, [bench.port() for _ in range(count)],
                                   Path(tmp) / "raw-ctl"))
            sharing.append(timed_up(bench, "--share"))
            together_ssh, together_sup, together_n = rss_of(sshd.port, state_dir)
            if len(sharing) < args.rounds:
                bench.sshwrap("down", "--all")
        together = statistics.median(sharing)
        raw = statistics.median(raws)

        # The per-forward cost, on the running master: -O forward against a new ssh process.
        paths = StatePaths(Path(bench.env["SSHWRAP_STATE_DIR"]))
        record = state.read_record(paths, "fwd000")
        if record is None or record.shared is None:
            raise SystemExit("the shared tunnels did not start")
        adds, spawns = per_forward_cost(bench, shared.control_path(paths, record.shared),
                                        args.samples)
        bench.sshwrap("down", "--all")

    add_ms = statistics.median(adds) * 1000
    spawn_ms = statistics.median(spawns) * 1000
    print(f"sshwrap shared-connection benchmark (one run; {os.cpu_count()} cores)\n")
    print(f"| `up` of {count} forwards to one host | separate ssh processes | "
          "one shared connection | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| wall time to verified-ready | {separate:.2f} s | {together:.2f} s | "
          f"{separate / together:.2f}x |")
    print(f"| ssh processes | {separate_n} | {together_n} | |")
    print(f"| total RSS of the ssh processes | {mib(separate_ssh)} | {mib(together_ssh)} | "
          f"{separate_ssh / max(1, together_ssh):.0f}x |")
    print(f"| total RSS of sshwrap's own processes | {mib(separate_sup)} | "
          f"{mib(together_sup)} | |")
    print(f"\n| shared `up` of {count} (median of {args.rounds}, fastest-slowest) | raw "
          f"`ssh -M -f -N` + {count} `ssh -O forward` | ratio |")
    print("| --- | --- | --- |")
    print(f"| {together:.2f} s ({min(sharing):.2f}-{max(sharing):.2f}) | {raw:.2f} s "
          f"({min(raws):.2f}-{max(raws):.2f}) | {together / raw:.2f}x |")
    print(f"| add one forward (median of {args.samples}) | new `ssh -f -N`: "
          f"{spawn_ms:.0f} ms | `ssh -O forward`: {add_ms:.1f} ms | "
          f"{spawn_ms / add_ms:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
