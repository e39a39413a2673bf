"""Bad input and faults of the runtime each get their documented exit code, never exit 1."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.errors import ExitCode
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system import state
from sshwrap.runtime.system.identity import tunnel_clients
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import TunnelState, status
from tests.runtime.tunnel_helpers import ProfileWriter, process_gone, record_of


def _sshwrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _nothing_started(paths: StatePaths, name: str) -> None:
    assert state.recorded_names(paths) == []
    assert tunnel_clients(paths.log(name)) == []
    with pytest.raises(daemon.Unreachable):
        daemon.request(paths, {"op": "ping"}, timeout=5)


@pytest.mark.parametrize("command", ["up", "restart"])
@pytest.mark.parametrize("wait", ["nan", "inf", "-inf", "1e300", "0", "-1"])
def test_wait_that_is_no_number_of_seconds_is_bad_input(
    command: str, wait: str, state_dir: Path, profiles_dir: Path,
) -> None:
    (profiles_dir / "web.toml").write_text(
        'host = "127.0.0.1"\nport = 1\n[[forward]]\ntype = "dynamic"\nlisten = 1080\n')

    result = _sshwrap(command, "web", "--wait", wait)

    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert result.stderr.startswith("sshwrap: error: --wait: must be a number of seconds")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    _nothing_started(StatePaths(state_dir), "web")


# -- damaged records ------------------------------------------------------------------------

DAMAGED = {
    "not UTF-8": b'{"version": 1, "name": "\xff\xfe"}',
    "a JSON list": b'[{"version": 1}]',
    "truncated": b'{"version": 1, "name": "broken", "pid": 12',
    "nested too deep": b"[" * 100_000,
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_record_is_reported_and_status_of_all_works(
    content: bytes, state_dir: Path, profiles_dir: Path,
) -> None:
    paths = StatePaths(state_dir).ensure()
    (profiles_dir / "fine.toml").write_text(
        'host = "127.0.0.1"\n[[forward]]\ntype = "dynamic"\nlisten = 1080\n')
    paths.record("broken").write_bytes(content)

    report = status(ProfileStore((profiles_dir,)), paths=paths)

    rows = {row.name: row for row in report.tunnels}
    assert rows["fine"].state is TunnelState.DOWN
    assert rows["broken"].state is TunnelState.FAILED
    assert str(paths.record("broken")) in rows["broken"].detail
    assert rows["broken"].failure_code == ExitCode.STATE
    assert report.exit_code is ExitCode.UNHEALTHY

    shown = _sshwrap("status", "--json")
    assert shown.returncode == ExitCode.UNHEALTHY, shown.stderr
    assert [r["state"] for r in json.loads(shown.stdout)] == ["failed", "down"]
    up = _sshwrap("up", "broken", "--profiles", str(profiles_dir))
    assert up.returncode == ExitCode.BAD_INPUT  # no such profile: nothing to start
    down = _sshwrap("down", "broken")
    assert down.returncode == 0, down.stderr
    assert "broken: cleaned" in down.stdout
    assert state.recorded_names(paths) == []


@pytest.mark.sshd
def test_down_stops_the_client_of_a_truncated_record_by_its_identity(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    write_profile("cut", [{"type": "local", "listen": free_port(),
                           "to": f"127.0.0.1:{banner_server.port}"}])
    started = _sshwrap("up", "cut")
    assert started.returncode == 0, started.stderr
    record = record_of(runtime_paths, "cut")
    text = runtime_paths.record("cut").read_bytes()
    runtime_paths.record("cut").write_bytes(text[: len(text) // 2])

    up_again = _sshwrap("up", "cut")
    assert up_again.returncode == ExitCode.STATE, up_again.stderr
    assert f"{runtime_paths.record('cut')}: damaged record" in up_again.stderr
    stopped = _sshwrap("down", "cut")

    assert stopped.returncode == 0, stopped.stderr
    assert f"cut: stopped (pid {record.pid})" in stopped.stdout
    assert process_gone(record.pid)
    assert state.recorded_names(runtime_paths) == []


# -- a state dir that cannot be written -----------------------------------------------------


@contextlib.contextmanager
def _mounted(target: Path, *args: str) -> Iterator[None]:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@pytest.fixture
def read_only_state(state_dir: Path) -> Iterator[Path]:
    StatePaths(state_dir).ensure()
    with _mounted(state_dir, "--bind", str(state_dir)):
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(state_dir)],
                                 capture_output=True, check=False)
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield state_dir


@pytest.fixture
def full_state(state_dir: Path) -> Iterator[Path]:
    state_dir.mkdir(parents=True)
    with _mounted(state_dir, "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"):
        StatePaths(state_dir).ensure()
        with contextlib.suppress(OSError), (state_dir / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        yield state_dir


@pytest.mark.sshd
@pytest.mark.parametrize("fixture", ["read_only_state", "full_state"])
def test_a_state_dir_that_cannot_be_written_is_one_clear_error(
    fixture: str, request: pytest.FixtureRequest, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("ro", [{"type": "local", "listen": free_port(),
                          "to": f"127.0.0.1:{banner_server.port}"}])
    root = request.getfixturevalue(fixture)

    result = _sshwrap("up", "ro")

    assert result.returncode == ExitCode.STATE, result.stderr
    assert result.stderr.startswith(
        f"sshwrap: error: {root}: the state directory cannot be written: ")
    assert "hint: " in result.stderr
    _nothing_started(StatePaths(root), "ro")
    shown = _sshwrap("status")  # reading works as before
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].split()[:2] == ["ro", "down"], shown.stdout


# -- races and pids -------------------------------------------------------------------------


@pytest.mark.sshd
def test_up_racing_down_all_never_fails(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    write_profile("racer", [{"type": "local", "listen": free_port(),
                             "to": f"127.0.0.1:{banner_server.port}"}])
    for _ in range(6):
        ups = subprocess.Popen([sys.executable, "-m", "sshwrap", "up", "racer"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        downs = subprocess.Popen([sys.executable, "-m", "sshwrap", "down", "--all"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        (_, up_err), (_, down_err) = ups.communicate(120), downs.communicate(120)
        assert ups.returncode == 0, up_err
        assert downs.returncode == 0, down_err
        assert _sshwrap("down", "--all").returncode == 0


@pytest.mark.sshd
def test_up_and_down_print_the_same_pid_the_clients(
    runtime_paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    write_profile("same", [{"type": "local", "listen": free_port(),
                            "to": f"127.0.0.1:{banner_server.port}"}])
    started = _sshwrap("up", "same")
    client = record_of(runtime_paths, "same").pid

    stopped = _sshwrap("down", "same")

    assert f"same: started (pid {client})" in started.stdout, started.stdout
    assert stopped.stdout.startswith(f"same: stopped (pid {client})"), stopped.stdout
