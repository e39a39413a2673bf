"""sshwrap.up/status/down: the engine's tunnels from Python, the same data as --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

import sshwrap
from sshwrap.sandbox import BannerServer
from tests.api.api_helpers import listeners
from tests.runtime.tunnel_helpers import BANNER, ECHO, read_banner_through


def _cli(*args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, check=False, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(Path.cwd())})
    return json.loads(done.stdout)


def test_up_status_down_with_a_listen_zero_profile(keys: dict[str, Any], profiles_dir: Path,
                                                   banner_server: BannerServer) -> None:
    data = dict(keys, forward=[{"type": "local", "listen": 0,
                                "to": f"127.0.0.1:{banner_server.port}"}])
    (profiles_dir / "mysql.toml").write_text(tomli_w.dumps(data))
    try:
        report = sshwrap.up("mysql")
        outcome = report.outcomes[0]
        assert outcome.action is sshwrap.Action.STARTED and outcome.pid is not None
        bound = {f.listen for f in outcome.forwards}
        port = int(next(iter(bound)).rsplit(":", 1)[1])
        assert port != 0 and bound == {f"127.0.0.1:{port}", f"[::1]:{port}"}
        assert listeners(port) == {"127.0.0.1": outcome.pid, "::1": outcome.pid}
        assert read_banner_through("::1", port) == (BANNER, ECHO)

        row = sshwrap.status("mysql").tunnels[0]
        assert row.state is sshwrap.TunnelState.UP and row.healthy and not row.changed
        assert {f.listen for f in row.forwards} == bound
        assert {f["listen"] for f in _cli("status", "mysql", "--json")[0]["forwards"]} == bound
        # Asked again, the running tunnel is the same one: listen = 0 is not a change.
        again = sshwrap.up("mysql").outcomes[0]
        assert again.action is sshwrap.Action.ALREADY_UP and again.pid == outcome.pid
    finally:
        down = sshwrap.down("mysql")
    assert down.outcomes[0].action is sshwrap.Action.STOPPED
    assert listeners(port) == {}


def test_up_raises_the_failure_as_the_command_line_reports_it(
        keys: dict[str, Any], profiles_dir: Path) -> None:
    data = dict(keys, port=1, forward=[{"type": "local", "listen": 0, "to": "127.0.0.1:9"}])
    (profiles_dir / "nowhere.toml").write_text(tomli_w.dumps(data))
    try:
        raised = None
        try:
            sshwrap.up("nowhere", wait=20)
        except sshwrap.ConnectionFailed as error:
            raised = error
        assert raised is not None and raised.exit_code == 6
        report = sshwrap.up("nowhere", check=False)
        assert report.outcomes[0].error is not None and report.exit_code == 6
    finally:
        sshwrap.down("nowhere", check=False)
