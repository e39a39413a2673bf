"""What the far-side proof adds to ``up``: one profile with one remote forward, started and
stopped again and again, against a private sshd on loopback. Run it with PYTHONPATH at the
tree to measure; compare two trees by running it for each."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sshwrap.sandbox import free_port, sandbox

ROUNDS = 11


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, sandbox(Path(folder)) as (sshd, identity):
        profiles = Path(folder) / "profiles"
        profiles.mkdir()
        (profiles / "rev.toml").write_text(
            f'host = "127.0.0.1"\nport = {sshd.port}\nssh_config_file = "{identity.ssh_config}"\n'
            f'[[forward]]\ntype = "remote"\nlisten = {free_port()}\nto = "localhost:9"\n')
        env = dict(os.environ, SSHWRAP_PROFILES=str(profiles),
                   SSHWRAP_STATE_DIR=str(Path(folder) / "state"))

        def sshwrap(*args: str) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sshwrap", *args], env=env, check=True,
                           capture_output=True)
            return time.perf_counter() - start

        sshwrap("up", "rev")  # the engine started, caches warm
        sshwrap("down", "rev")
        times = []
        for _ in range(ROUNDS):
            times.append(sshwrap("up", "rev"))
            sshwrap("down", "rev")
        sshwrap("down", "--all")
        quartiles = statistics.quantiles(times, n=4)
        print(f"up, one remote forward: median {statistics.median(times) * 1000:.0f} ms "
              f"[{quartiles[0] * 1000:.0f}-{quartiles[2] * 1000:.0f}] over {ROUNDS} runs "
              f"({sys.modules['sshwrap'].__file__})")


if __name__ == "__main__":
    main()
