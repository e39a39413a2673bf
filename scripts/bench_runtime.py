#!/usr/bin/env python3
"""Benchmark sshwrap's runtime against raw ssh in one run, on a private sshd; prints a table.

Measured: `sshwrap up` to verified-ready against `ssh -f -N -o ExitOnForwardFailure=yes` for the
same forward, with the engine running and with none yet; `sshwrap status` with 1 and with 100
running tunnels, and the status use case over those 100 with and without its live numbers;
`up --tag` of 20 profiles against 20 raw `ssh -f` started at once, with no engine running yet
and with one running, and the `down` of those 20. Every figure is a median
over repeated runs, and every ratio compares runs made here, now, one after another.

sshwrap runs as installed: from the `sshwrap` script of a virtual environment of its own (what
pipx gives), which sees this checkout and the packages it needs but none of the start-up hooks
(.pth files) of this interpreter's site-packages. One row repeats `up` through
`python -m sshwrap` of this interpreter, hooks and all, to show what they cost here.
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

import psutil

from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port

#: How long `status` is measured after the tunnels' start: the steady state of running
#: tunnels, not the last of a hundred ssh sessions still settling in (which took the engine's
#: part of a status from 9 to 13 ms here).
SETTLE = 5.0


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class Timing(float):
    """The median of several runs in seconds, with the fastest and the slowest (the spread)."""

    low: float
    high: float

    def __new__(cls, samples: list[float]) -> Timing:
        timing = super().__new__(cls, statistics.median(samples))
        timing.low, timing.high = min(samples), max(samples)
        return timing

    def ms(self) -> str:
        return f"{self * 1000:.0f} ms ({self.low * 1000:.0f}-{self.high * 1000:.0f})"


def median_of(runs: int, action: Callable[[], object], between: Callable[[], object]) -> Timing:
    samples = []
    for _ in range(runs):
        samples.append(timed(action))
        between()
    return Timing(samples)


def paired_medians(runs: int, first: Callable[[], object], after_first: Callable[[], object],
                   second: Callable[[], object],
                   after_second: Callable[[], object]) -> tuple[Timing, Timing]:
    """Medians of two actions timed in turns, so that a change in the machine's load weighs
    on both alike."""
    a, b = [], []
    for _ in range(runs):
        a.append(timed(first))
        after_first()
        b.append(timed(second))
        after_second()
    return Timing(a), Timing(b)


class Bench:
    """Profiles reaching a private sshd, and sshwrap run on them with a private state dir."""

    def __init__(self, root: Path, sshd: Sshd, target: BannerServer) -> None:
        self.root = root
        self.launcher = installed_launcher(root / "venv")
        self.sshd = sshd
        self.target = target
        self.profiles = root / "profiles"
        self.profiles.mkdir()
        self.env = dict(os.environ, SSHWRAP_PROFILES=str(self.profiles),
                        SSHWRAP_STATE_DIR=str(root / "state"))
        self._given: set[int] = set()

    def port(self) -> int:
        """A free port not handed out before: free_port() alone may return one twice."""
        while (port := free_port()) in self._given:
            pass
        self._given.add(port)
        return port

    def profile(self, name: str, port: int, tags: str = "", *, ipv4_only: bool = False) -> None:
        """A one-forward profile; ``ipv4_only`` binds 127.0.0.1 alone, as raw ``ssh -L`` does."""
        listen = f'"127.0.0.1:{port}"' if ipv4_only else str(port)
        (self.profiles / f"{name}.toml").write_text(
            f'host = "127.0.0.1"\nport = {self.sshd.port}\nuser = "{self.sshd.user}"\n'
            f'ssh_config_file = "{self.sshd.client.ssh_config}"\n'
            f"tags = [{tags}]\n"
            f'[[forward]]\ntype = "local"\nlisten = {listen}\n'
            f'to = "127.0.0.1:{self.target.port}"\n'
        )

    def sshwrap(self, *args: str, launcher: list[str] | None = None) -> None:
        result = subprocess.run([*(launcher or self.launcher), *args], env=self.env,
                                capture_output=True, text=True, check=False)
        if result.returncode not in (0, 8):
            raise SystemExit(f"sshwrap {' '.join(args)} failed: {result.stderr}")

    def raw_ssh(self, port: int) -> list[str]:
        return ["ssh", "-f", "-N", "-F", str(self.sshd.client.ssh_config), "-o", "BatchMode=yes",
                "-o", "ExitOnForwardFailure=yes", "-p", str(self.sshd.port), "-l", self.sshd.user,
                "-L", f"127.0.0.1:{port}:127.0.0.1:{self.target.port}", "127.0.0.1"]


def installed_launcher(venv: Path) -> list[str]:
    """The ``sshwrap`` script of a new virtual environment, as pip writes it, seeing this
    checkout and the site-packages of this interpreter (where sshwrap's dependencies are)
    without running their .pth start-up hooks."""
    import site

    import sshwrap

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    folders = [str(Path(sshwrap.__file__).resolve().parent.parent), *site.getsitepackages()]
    (Path(purelib) / "sshwrap-bench.pth").write_text("\n".join(folders) + "\n")
    script = venv / "bin" / "sshwrap"
    script.write_text(f"#!{python}\nimport sys\nfrom sshwrap.cli.express import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return [str(script)]


def kill_raw(port: int) -> None:
    marker = f"127.0.0.1:{port}:"
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in arg for arg in proc.info["cmdline"] or []):
                proc.kill()
                proc.wait(5)


def memory_of(state_dir: Path) -> tuple[int, int, int, int]:
    """(client processes, their RSS, supervisor processes, their RSS) of the tunnels under
    ``state_dir``; a supervisor of several tunnels counts once."""
    import json

    clients: set[int] = set()
    supervisors: set[int] = set()
    for record in (state_dir / "tunnels").glob("*.json"):
        data = json.loads(record.read_text())
        if data.get("pid"):
            clients.add(data["pid"])
        if data.get("supervisor_pid"):
            supervisors.add(data["supervisor_pid"])

    def rss(pids: set[int]) -> int:
        total = 0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    return len(clients), rss(clients), len(supervisors), rss(supervisors)


@contextlib.contextmanager
def private_sshd(root: Path) -> Iterator[Bench]:
    """A private sshd and a service behind it; every tunnel is taken down at the end, even
    when a measurement fails half-way."""
    client = ClientIdentity(root / "client")
    with Sshd(root / "server", client, extra_config={"MaxStartups": "400:30:800",
                                                       "MaxSessions": "400"}) as sshd, \
            BannerServer() as target:
        bench = Bench(root, sshd, target)
        try:
            yield bench
        finally:
            subprocess.run([sys.executable, "-m", "sshwrap", "down", "--all"], env=bench.env,
                           capture_output=True, check=False)


def resident_start_time(bench: Bench, name: str, runs: int) -> Timing:
    """Median time the engine takes from a start request to a verified tunnel:
    ``up`` without the command line around it."""
    from sshwrap.runtime.engine import daemon
    from sshwrap.runtime.system.paths import StatePaths

    paths = StatePaths(Path(bench.env["SSHWRAP_STATE_DIR"])).ensure()
    daemon.ensure_running(paths, bench.env)
    start = {"op": "start", "name": name, "wait": 15, "dirs": [str(bench.profiles)],
             "env": bench.env, "secret": None}

    def begin() -> None:
        if daemon.request(paths, start, timeout=30).get("code") != 0:
            raise SystemExit(f"the engine could not start {name}")

    return median_of(runs, begin,
                     lambda: daemon.request(paths, {"op": "stop", "name": name}, timeout=30))


def twenty_at_once(bench: Bench, runs: int, up: Timing) -> list[tuple[str, str, str, str]]:
    """``up --tag`` of 20 profiles against 20 raw ``ssh -f`` started at once: with no engine
    running yet (``down --all`` ends it), then with one running."""
    rows: list[tuple[str, str, str, str]] = []
    twenty = [bench.port() for _ in range(20)]
    for i, tport in enumerate(twenty):
        bench.profile(f"twenty{i:02d}", tport, tags='"twenty"', ipv4_only=True)

    def raw_twenty() -> None:
        started = [subprocess.Popen(bench.raw_ssh(p)) for p in twenty]
        if any(proc.wait() != 0 for proc in started):
            raise SystemExit("raw ssh -f failed")

    def kill_twenty() -> None:
        for tport in twenty:
            kill_raw(tport)

    all20, raw20 = paired_medians(
        max(3, runs // 3), lambda: bench.sshwrap("up", "--tag", "twenty"),
        lambda: bench.sshwrap("down", "--all"), raw_twenty, kill_twenty)
    rows.append(("up --tag of 20 profiles, no engine running yet", f"{all20.ms()}",
                 f"up of 1: {up.ms()}", f"{all20 / up:.2f}x"))
    rows.append(("  the same against 20 raw ssh -f started at once", "",
                 f"{raw20.ms()}", f"{all20 / raw20:.2f}x"))
    # With the engine running (the tunnel "one" keeps it), as after any earlier up.
    bench.sshwrap("up", "one")
    names = [f"twenty{i:02d}" for i in range(len(twenty))]
    downs: list[float] = []
    warm20, rawwarm20 = paired_medians(
        max(3, runs // 3), lambda: bench.sshwrap("up", "--tag", "twenty"),
        lambda: downs.append(timed(lambda: bench.sshwrap("down", *names))),
        raw_twenty, kill_twenty)
    rows.append(("up --tag of 20 profiles, engine running", f"{warm20.ms()}",
                 f"20 raw ssh -f at once: {rawwarm20.ms()}", f"{warm20 / rawwarm20:.2f}x"))
    rows.append(("down of those 20, each stopped and its ports seen free", Timing(downs).ms(),
                 "", ""))
    bench.sshwrap("down", "--all")
    return rows


def engineless(bench: Bench, runs: int) -> list[tuple[str, str, str, str]]:
    """Commands that need no engine (none runs yet), each against a bare interpreter of the
    same virtual environment (``python -c pass``)."""
    python = str(Path(bench.launcher[0]).parent / "python")
    bare = median_of(runs, lambda: subprocess.run([python, "-c", "pass"], check=True),
                     lambda: None)
    rows = [("commands needing no engine, against a bare interpreter", "",
             f"python -c pass: {bare.ms()}", "")]
    for args in (("--version",), ("list",), ("validate", "one"), ("compile", "one"),
                 ("status", "--json")):
        took = median_of(runs, lambda args=args: bench.sshwrap(*args), lambda: None)
        rows.append((f"  sshwrap {' '.join(args)}", took.ms(), "", f"{took / bare:.2f}x"))
    return rows


def live_numbers_cost(bench: Bench, runs: int, many: int) -> list[tuple[str, str, str, str]]:
    """The status use case over the running tunnels in this process (from their records),
    with its live numbers (runtime/observe/livenums.py: one sock_diag dump for every row) and with
    them left out, timed in turns; then the numbers alone, as the engine reads them again.
    Like the engine, it keeps one ReadyWatch (who holds which listener) across its statuses."""
    from sshwrap.runtime.observe import livenums
    from sshwrap.runtime.observe.readywatch import ReadyWatch
    from sshwrap.runtime.observe.statusmemory import StatusMemory
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.store import ProfileStore
    from sshwrap.usecases import status as status_module

    store, paths = ProfileStore((bench.profiles,)), StatePaths(Path(bench.env["SSHWRAP_STATE_DIR"]))
    numbered, ready = status_module.with_numbers, ReadyWatch()
    read_meanwhile = status_module.TableRead
    memory = StatusMemory()  # as the engine keeps one

    def without() -> object:
        status_module.with_numbers = lambda rows, *_, **__: list(rows)  # type: ignore[assignment]
        status_module.TableRead = lambda: None  # type: ignore[assignment,misc]  # no dump either
        try:
            return status_module.status(store, paths=paths, ready=ready, memory=memory)
        finally:
            status_module.with_numbers, status_module.TableRead = numbered, read_meanwhile

    report = status_module.status(store, paths=paths, ready=ready, memory=memory)
    shown = sum(row.rtt_ms is not None for row in report.tunnels)
    runs = max(runs, 21)
    with_them, left_out = paired_medians(
        runs, lambda: status_module.status(store, paths=paths, ready=ready, memory=memory),
        lambda: None, without, lambda: None)
    alone = median_of(runs, lambda: livenums.with_numbers(report.tunnels, hops=memory.hops),
                      lambda: None)
    dump = median_of(runs, livenums.sockdiag.tcp_connections, lambda: None)
    return [(f"  status use case, {many} tunnels, with live numbers ({shown} with an RTT)",
             with_them.ms(), f"without: {left_out.ms()}", f"{with_them / left_out:.2f}x"),
            ("    the live numbers alone (one dump; first hops known)", alone.ms(),
             f"the dump alone: {dump.ms()}", "")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="repetitions per measurement")
    parser.add_argument("--many", type=int, default=100, help="tunnels for the status test")
    args = parser.parse_args()
    # An installed sshwrap runs from bytecode: where PYTHONDONTWRITEBYTECODE is set, every run
    # would compile its sources first, a cost no installed copy pays.
    import compileall

    import sshwrap

    compileall.compile_dir(Path(sshwrap.__file__).parent, quiet=1)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sshwrap-bench-") as tmp, \
            private_sshd(Path(tmp)) as bench:
        port = bench.port()
        bench.profile("one", port, ipv4_only=True)  # the very forward raw ssh -L makes
        rows.extend(engineless(bench, args.runs))
        bench.sshwrap("up", "one")  # the engine runs from here on
        bench.sshwrap("down", "one")
        up, raw = paired_medians(
            args.runs, lambda: bench.sshwrap("up", "one"), lambda: bench.sshwrap("down", "one"),
            lambda: subprocess.run(bench.raw_ssh(port), check=True), lambda: kill_raw(port))
        rows.append(("up one tunnel, to verified-ready", f"{up.ms()}",
                     f"raw ssh -f: {raw.ms()}", f"{up / raw:.2f}x"))
        here = [sys.executable, "-m", "sshwrap"]
        checkout = median_of(args.runs, lambda: bench.sshwrap("up", "one", launcher=here),
                             lambda: bench.sshwrap("down", "one"))
        rows.append(("  the same through python -m sshwrap with this interpreter's hooks",
                     f"{checkout.ms()}", f"raw ssh -f: {raw.ms()}",
                     f"{checkout / raw:.2f}x"))
        resident = resident_start_time(bench, "one", args.runs)
        rows.append(("  of which the engine's part (request to verified)",
                     f"{resident.ms()}", f"raw ssh -f: {raw.ms()}",
                     f"{resident / raw:.2f}x"))
        # down --all also ends the engine: each up starts one first.
        cold = median_of(args.runs, lambda: bench.sshwrap("up", "one"),
                         lambda: bench.sshwrap("down", "--all"))
        rows.append(("  the same, no engine running yet", f"{cold.ms()}",
                     f"raw ssh -f: {raw.ms()}", f"{cold / raw:.2f}x"))

        bench.sshwrap("up", "one")
        time.sleep(SETTLE)
        status_one = median_of(args.runs, lambda: bench.sshwrap("status", "--json"),
                               lambda: None)
        for i in range(args.many - 1):
            bench.profile(f"many{i:03d}", bench.port(), tags='"many"')
        bench.sshwrap("up", "--tag", "many", "--wait", "60")
        time.sleep(SETTLE)
        status_many = median_of(args.runs, lambda: bench.sshwrap("status", "--json"),
                                lambda: None)
        rows.append((f"status, {args.many} running tunnels", f"{status_many.ms()}",
                     f"1 running: {status_one.ms()}",
                     f"{status_many / status_one:.2f}x"))
        rows.extend(live_numbers_cost(bench, args.runs, args.many))
        clients, client_rss, supervisors, supervisor_rss = memory_of(
            Path(bench.env["SSHWRAP_STATE_DIR"]))
        rows.append((f"memory of {clients} ssh clients", f"{client_rss / 2**20:.0f} MiB",
                     f"{supervisors} supervisor process: {supervisor_rss / 2**20:.0f} MiB", ""))
        bench.sshwrap("down", "--all")
        for path in bench.profiles.glob("many*.toml"):
            path.unlink()

        rows.extend(twenty_at_once(bench, args.runs, up))

    print(f"sshwrap runtime benchmark ({args.runs} runs each, medians and (fastest-slowest); "
          f"{os.cpu_count()} cores)\n")
    print("| measurement | sshwrap | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
