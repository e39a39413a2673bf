"""Failure is state: a restart that meets a full state dir, a reconnecting tunnel asked up
again, a supervisor's own bug; each stays visible with its reason, none ends silently."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.runtime.engine import daemon
from sshwrap.runtime.observe.results import TunnelStatus
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases import served
from sshwrap.usecases.up import Action, TunnelState, up
from tests.events.conftest import Follower, follower
from tests.runtime.tunnel_helpers import (
    BANNER,
    ProfileWriter,
    eventually,
    read_banner_through,
    record_of,
)

__all__ = ["follower"]


@pytest.fixture
def small_state(state_dir: Path) -> Iterator[Path]:
    """The state dir on a tmpfs of 512 KiB; its engine stopped and the mount gone at the
    end, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    state_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs",
                    str(state_dir)], check=True)
    try:
        yield state_dir
    finally:
        with contextlib.suppress(Exception):
            daemon.shutdown(StatePaths(state_dir))
        if subprocess.run(["umount", str(state_dir)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(state_dir)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system holding it has no byte left."""
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    with contextlib.suppress(OSError), open(path, "ab", buffering=0) as filler:
        while True:  # the last partial block
            filler.write(b"\0")


def _row(store: ProfileStore, paths: StatePaths, name: str) -> TunnelStatus:
    """The tunnel's row as ``sshwrap status`` shows it (asked of the engine)."""
    return served.status_report(store, [name], paths).tunnels[0]


def _hook(tmp_path: Path) -> tuple[list[str], Path]:
    """An on_failed hook that writes its state and reason outside the state dir."""
    out = tmp_path / "hook.out"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$SSHWRAP_STATE: $SSHWRAP_REASON" >> {out}\n')
    script.chmod(0o700)
    return [str(script)], out


def _up_cli(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", "up", name, "--wait", "10"],
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_restart_on_a_full_state_dir_is_kept_told_and_retried_until_space_returns(
    *, small_state: Path, store: ProfileStore, runtime_paths: StatePaths,
    write_profile: ProfileWriter, banner_server: BannerServer, follower: type[Follower],
    tmp_path: Path,
) -> None:
    port = free_port()
    hook, hook_out = _hook(tmp_path)
    write_profile("t", [{"type": "local", "listen": f"127.0.0.1:{port}",
                         "to": f"127.0.0.1:{banner_server.port}"}],
                  restart="always", hooks={"on_failed": hook})
    outcome = up(store, ["t"], paths=runtime_paths).outcomes[0]
    assert outcome.action is Action.STARTED, outcome.error
    events = follower(runtime_paths, "t")
    first = record_of(runtime_paths, "t")

    filler = small_state / "filler"
    _fill(filler)
    try:
        os.kill(first.pid, signal.SIGKILL)  # the engine restarts it: nothing can be recorded
        seen = events.until("t", "failed")
        failed = seen[-1]
        assert "No space left on device" in str(failed["reason"]), failed
        eventually(lambda: hook_out.exists() and "failed:" in hook_out.read_text(),
                   "the on_failed hook ran")
        assert "No space left on device" in hook_out.read_text()

        def reconnecting() -> bool:
            row = _row(store, runtime_paths, "t")
            return row.state is TunnelState.RECONNECTING and row.next_retry is not None
        eventually(reconnecting, "status shows the tunnel reconnecting, with a next attempt")
        row = _row(store, runtime_paths, "t")
        assert "No space left on device" in row.detail and "next attempt in" in row.detail
        assert row.pid is None

        asked = _up_cli("t")  # no client runs: never "already up"
        assert "already" not in asked.stdout + asked.stderr, asked
        assert asked.returncode != 0, asked
    finally:
        filler.unlink()

    def back_up() -> bool:
        row = _row(store, runtime_paths, "t")
        return row.state is TunnelState.UP and row.healthy and row.pid not in (None, first.pid)
    eventually(back_up, "the tunnel came back by itself once space returned")
    assert read_banner_through("127.0.0.1", port)[0] == BANNER
    record = record_of(runtime_paths, "t")  # and the disk has caught up with the memory
    assert record.phase == "up" and record.pid != first.pid and record.restarts >= 1


def test_up_of_a_reconnecting_tunnel_starts_it_instead_of_saying_already_up(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    port = free_port()
    write_profile("t", [{"type": "local", "listen": f"127.0.0.1:{port}",
                         "to": f"127.0.0.1:{banner_server.port}"}], restart="always")
    assert up(store, ["t"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    first = record_of(runtime_paths, "t")
    import socket

    with socket.socket() as squatter:
        os.kill(first.pid, signal.SIGKILL)
        # The port is taken once the client has let go of it: every restart fails.
        eventually(lambda: _bound(squatter, port), "the port taken by someone else")
        eventually(lambda: record_of(runtime_paths, "t").phase == "reconnecting"
                   and record_of(runtime_paths, "t").restarts >= 1, "restarts failing")
        asked = _up_cli("t")
        assert "already" not in asked.stdout + asked.stderr, asked
        assert asked.returncode != 0 and "held by" in asked.stderr, asked
        kept = record_of(runtime_paths, "t")
        assert kept.kept_failure and "held by" in str(kept.last_failure)
        assert state.live_process(kept) is None
    # Asked again with the port free: started, not "already up" from the failed record.
    outcome = up(store, ["t"], paths=runtime_paths).outcomes[0]
    assert outcome.action is Action.STARTED, outcome.error
    assert read_banner_through("127.0.0.1", port)[0] == BANNER


def _bound(sock: object, port: int) -> bool:
    import socket

    assert isinstance(sock, socket.socket)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
    except OSError:
        return False
    return True


def test_reload_calls_an_unedited_listen_0_profile_unchanged_and_an_edited_hook_updated(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    from sshwrap.runtime.engine.reload import reload

    forward = [{"type": "local", "listen": "127.0.0.1:0",
                "to": f"127.0.0.1:{banner_server.port}"}]
    write_profile("t", forward)
    assert up(store, ["t"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    before = record_of(runtime_paths, "t")
    chosen = before.forwards[0].port
    assert chosen not in (None, 0)

    report = reload(runtime_paths)
    assert [(o.name, o.action) for o in report.outcomes] == [("t", "unchanged")]

    hook, hook_out = _hook(tmp_path)  # a hook edited in: applied to the running tunnel
    write_profile("t", forward, hooks={"on_down": hook})
    report = reload(runtime_paths)
    assert [(o.name, o.action) for o in report.outcomes] == [("t", "updated")]
    assert reload(runtime_paths).outcomes[0].action == "unchanged"
    after = record_of(runtime_paths, "t")
    assert after.pid == before.pid and after.forwards[0].port == chosen  # same client, port
    assert read_banner_through("127.0.0.1", int(chosen))[0] == BANNER
    from sshwrap.usecases.up import down

    down(["t"], paths=runtime_paths)
    eventually(lambda: hook_out.exists() and "down:" in hook_out.read_text(),
               "the edited hook ran on down")


def test_a_supervisor_meeting_an_unexpected_error_keeps_it_as_a_failure_and_tells_it(
    *, runtime_paths: StatePaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug of the supervisor's own (here: reading the host's facts raises what no code
    expects) ends its thread as a kept failure, told to followers and to on_failed."""
    from sshwrap import machine
    from sshwrap.core.model import Hooks as ProfileHooks
    from sshwrap.core.model import Profile
    from sshwrap.runtime.supervise.events import Event
    from sshwrap.runtime.supervise.hooks import Hooks
    from sshwrap.runtime.supervise.supervisor import Supervisor

    hook, hook_out = _hook(tmp_path)

    def broken() -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(machine, "host_facts", broken)
    hooks = Hooks()
    supervisor = Supervisor(Profile(name="t", host="127.0.0.1",
                                    hooks=ProfileHooks(on_failed=tuple(hook))),
                            runtime_paths, first_wait=1.0, foreground=False, hooks=hooks)
    told: list[Event] = []
    supervisor.on_event = told.append
    code = supervisor.run(handle_signals=False)
    hooks.drain()

    assert code == 1  # an internal error's exit code
    assert [e.to_state for e in told][-1] == "failed"
    assert "internal error of its supervisor: RuntimeError: a bug" in told[-1].reason
    assert hook_out.exists() and "failed:" in hook_out.read_text()
    kept = record_of(runtime_paths, "t")
    assert kept.kept_failure and "RuntimeError" in str(kept.last_failure)
