#!/usr/bin/env python3
"""Benchmark the Python API: ``with sshwrap.Tunnel(...)`` to verified-ready against a raw
``ssh -f`` on the same forward, and against sshtunnel's SSHTunnelForwarder if it is installed.

A real sshd on loopback (sshwrap.sandbox) and a banner service behind it. In every round each
contender opens the same local forward (127.0.0.1 and ::1, one port), in turns that rotate,
and we time (1) until it says it is ready and (2) until the banner has come back through the
forward. sshtunnel is optional: ``pip install sshtunnel`` in a virtualenv of your own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sshwrap
from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port

Opener = Callable[[int], Callable[[], None]]  # opens a forward on a port; returns its closer


def banner_through(port: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        if not conn.recv(64):
            raise RuntimeError(f"nothing came back through port {port}")


def contenders(sshd: Sshd, target: int) -> dict[str, Opener]:
    def with_sshwrap(port: int) -> Callable[[], None]:
        tunnel = sshwrap.Tunnel(host="127.0.0.1", port=sshd.port, user=sshd.user,
                                ssh_config_file=str(sshd.client.ssh_config),
                                forwards=[sshwrap.Local(listen=port, to=f"127.0.0.1:{target}")])
        tunnel.__enter__()
        return lambda: tunnel.__exit__(None, None, None)

    def raw_ssh_f(port: int) -> Callable[[], None]:
        # -f returns once the forwards are set up, with ExitOnForwardFailure as sshwrap runs it.
        subprocess.run(
            ["ssh", "-f", "-N", "-F", str(sshd.client.ssh_config), "-p", str(sshd.port),
             "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
             "-L", f"127.0.0.1:{port}:127.0.0.1:{target}",
             "-L", f"[::1]:{port}:127.0.0.1:{target}", f"{sshd.user}@127.0.0.1"],
            check=True, stdin=subprocess.DEVNULL)
        found = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}:127.0.0.1:{target}"],
                               capture_output=True, text=True, check=False).stdout.split()

        def close() -> None:
            for pid in found:
                os.kill(int(pid), signal.SIGTERM)
        return close

    openers: dict[str, Opener] = {"sshwrap Tunnel": with_sshwrap, "raw ssh -f": raw_ssh_f}
    try:
        import sshtunnel  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return openers

    def with_sshtunnel(port: int) -> Callable[[], None]:
        forwarder = sshtunnel.SSHTunnelForwarder(
            ("127.0.0.1", sshd.port), ssh_username=sshd.user, ssh_pkey=str(sshd.client.key),
            remote_bind_address=("127.0.0.1", target), local_bind_address=("127.0.0.1", port),
            allow_agent=False, ssh_config_file=None)
        forwarder.start()
        return forwarder.stop  # type: ignore[no-any-return]

    openers[f"sshtunnel {sshtunnel.__version__}"] = with_sshtunnel
    return openers


def summary(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median_ms": round(statistics.median(values) * 1000, 1),
            "q1_ms": round(q[0] * 1000, 1), "q3_ms": round(q[2] * 1000, 1),
            "min_ms": round(min(values) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swbench-", dir="/tmp") as tmp:
        os.environ["SSHWRAP_STATE_DIR"] = str(Path(tmp) / "state")
        root = Path(tmp)
        with Sshd(root / "sshd", ClientIdentity(root / "client")) as sshd, \
                BannerServer() as banner:
            openers = contenders(sshd, banner.port)
            ready: dict[str, list[float]] = {name: [] for name in openers}
            through: dict[str, list[float]] = {name: [] for name in openers}
            names = list(openers)
            for round_no in range(args.rounds + 1):  # round 0 warms caches up, not counted
                turn = names[round_no % len(names):] + names[:round_no % len(names)]
                for name in turn:
                    port = free_port()
                    start = time.perf_counter()
                    close = openers[name](port)
                    ready_at = time.perf_counter()
                    banner_through(port)
                    done_at = time.perf_counter()
                    close()
                    if round_no:
                        ready[name].append(ready_at - start)
                        through[name].append(done_at - start)
                    time.sleep(0.2)  # let the closed one go before the next opens
    result = {name: {"ready": summary(ready[name]), "ready_and_banner": summary(through[name])}
              for name in names}
    base = result["raw ssh -f"]["ready"]["median_ms"]
    if args.json:
        print(json.dumps({"rounds": args.rounds, "results": result}, indent=2))
        return 0
    print(f"{args.rounds} rounds; milliseconds: median [q1-q3] (min-max); ratio to raw ssh -f")
    for name, figures in result.items():
        r, b = figures["ready"], figures["ready_and_banner"]
        print(f"{name:22} ready {r['median_ms']:7.1f} [{r['q1_ms']:.1f}-{r['q3_ms']:.1f}] "
              f"({r['min_ms']:.1f}-{r['max_ms']:.1f})  x{r['median_ms'] / base:.2f}   "
              f"+banner {b['median_ms']:7.1f} [{b['q1_ms']:.1f}-{b['q3_ms']:.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
