"""A busy tunnel's log stays under its cap while ``logs -f`` shows each of its lines once:
thirty thousand connections through a real sshd, ssh ``-v`` logging each."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sshwrap.runtime.system import logs
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, up
from tests.runtime.tunnel_helpers import ProfileWriter, eventually, record_of

CONNECTIONS = 30_000
CAP = 1 << 20  # 30,000 connections write about 9 MB: a dozen cuts and more
SENTINEL, READY = "--- the test's last line", "--- the test's first line"


def _connect_once(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        assert conn.recv(64).startswith(b"220")


def test_a_busy_tunnels_log_stays_under_its_cap_and_logs_f_shows_every_line_once(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(logs.CAP_ENV, str(CAP))  # the engine started by up reads it
    port = free_port()
    write_profile("busy", [{"type": "local", "listen": f"127.0.0.1:{port}",
                            "to": f"127.0.0.1:{banner_server.port}"}])
    assert up(store, ["busy"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    log = runtime_paths.log("busy")
    requested = f"Connection to port {port} forwarding to"
    follower = subprocess.Popen([sys.executable, "-m", "sshwrap", "logs", "busy", "-f",
                                 "-n", "0"], stdout=subprocess.PIPE, text=True)
    shown: list[str] = []
    reader = threading.Thread(target=lambda: shown.extend(follower.stdout or ()), daemon=True)
    reader.start()

    def following() -> bool:  # it begins at the log's end once started: a line tells when
        with log.open("a") as handle:
            handle.write(READY + "\n")
        return any(READY in line for line in shown)

    eventually(following, "logs -f follows")
    largest, done = 0, threading.Event()

    def watch() -> None:
        nonlocal largest
        while not done.is_set():
            largest = max(largest, log.stat().st_size)
            done.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            for result in pool.map(_connect_once, [port] * CONNECTIONS, chunksize=500):
                assert result is None
        eventually(lambda: logs.end_offset(log) - log.stat().st_size > 8 * CAP,
                   "the engine cut the log", timeout=30)
        with log.open("a") as handle:  # once shown, every line before it was read
            handle.write(SENTINEL + "\n")
        eventually(lambda: any(SENTINEL in line for line in shown), "logs -f caught up",
                   timeout=60)
    finally:
        done.set()
        follower.terminate()
        follower.wait(10)
    watcher.join()

    written = logs.end_offset(log)
    assert written > 8 * CAP, f"only {written} bytes were logged"
    # The engine looks every second: the log passes its cap by at most a second's lines.
    assert largest < 2 * CAP, f"the log reached {largest} bytes; its cap is {CAP}"
    assert sum(requested in line for line in shown) == CONNECTIONS
    assert not any("bytes were cut from the log" in line for line in shown)
    record = record_of(runtime_paths, "busy")
    assert os.path.samefile(record.log_path, log) and record.verified
