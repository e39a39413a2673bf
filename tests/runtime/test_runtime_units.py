"""Runtime pieces that need no ssh: records, locks, log parsing, socket ownership, severity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshwrap.errors import ExitCode, StateConflict, StateUnusable
from sshwrap.runtime.observe.verify import check_forwards, remote_results
from sshwrap.runtime.system import state
from sshwrap.runtime.system.listeners import Listener
from sshwrap.runtime.system.paths import StatePaths, default_state_dir
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord
from sshwrap.usecases.up import most_severe

V4 = ExpectedForward("local", "127.0.0.1:3307", "db:3306", host="127.0.0.1", port=3307)
V6 = ExpectedForward("local", "[::1]:3307", "db:3306", host="::1", port=3307)
REMOTE = ExpectedForward("remote", "localhost:8080", "127.0.0.1:80", host="localhost", port=8080)


def _record(name: str = "db") -> TunnelRecord:
    return TunnelRecord(name=name, pid=4242, create_time=1.5, argv=("ssh", "-N", "--", "h"),
                        profile_hash="abc", client="ssh", started_at=10.0, forwards=(V4, V6),
                        log_path="/x/db.log", log_offset=12)


def test_state_dir_prefers_the_variable_then_xdg() -> None:
    assert default_state_dir({"SSHWRAP_STATE_DIR": "/s", "XDG_STATE_HOME": "/x"}) == Path("/s")
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/sshwrap")
    assert default_state_dir({}) == Path.home() / ".local" / "state" / "sshwrap"


def test_record_round_trips_and_is_private(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path / "st")
    state.write_record(paths, _record())
    assert state.read_record(paths, "db") == _record()
    assert oct(paths.record("db").stat().st_mode & 0o777) == "0o600"
    assert oct(paths.tunnels.stat().st_mode & 0o777) == "0o700"
    assert state.recorded_names(paths) == ["db"]
    state.remove_record(paths, "db")
    assert state.read_record(paths, "db") is None


def test_record_of_another_version_is_refused_not_guessed(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path).ensure()
    paths.record("db").write_text('{"version": 99, "name": "db"}')
    with pytest.raises(StateUnusable, match="schema version 99") as foreign:
        state.read_record(paths, "db")
    assert foreign.value.exit_code == 9 and str(paths.record("db")) in foreign.value.message
    paths.record("db").write_text("{not json")
    with pytest.raises(StateUnusable):
        state.read_record(paths, "db")


def test_lock_held_elsewhere_times_out_with_state_conflict(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    with state.name_lock(paths, "db"):
        assert not state.lock_is_free(paths, "db")
        # flock belongs to an open file description: a second open conflicts even here.
        with pytest.raises(StateConflict, match="held the lock"), \
                state.name_lock(paths, "db", timeout=0.05):
            pass
        with state.name_lock(paths, "other", timeout=0.05):
            pass
    assert state.lock_is_free(paths, "db")


def test_ssh_and_plink_remote_forward_lines() -> None:
    log = (
        "debug1: remote forward success for: listen localhost:40097, connect 127.0.0.1:22\n"
        "Error: remote port forwarding failed for listen port 43037\n"
        "Remote port forwarding from localhost:50221 enabled\n"
        "Remote port forwarding from localhost:58251 refused\n"
    )
    assert remote_results(log) == ({"40097", "50221"}, {"43037", "58251"})


def test_remote_forward_health_comes_from_the_log() -> None:
    ok = "debug1: remote forward success for: listen localhost:8080, connect 127.0.0.1:80\n"
    assert check_forwards([REMOTE], 1, [], ok)[0].healthy
    refused = "Error: remote port forwarding failed for listen port 8080\n"
    assert check_forwards([REMOTE], 1, [], refused)[0].refused
    assert check_forwards([REMOTE], 1, [], "")[0].detail == "waiting for the server"


def test_squatter_on_one_family_is_caught() -> None:
    me = os.getpid()
    listeners = [Listener("ipv4", "127.0.0.1", 3307, me), Listener("ipv6", "::1", 3307, 999999)]
    v4, v6 = check_forwards([V4, V6], me, listeners, None)
    assert v4.healthy
    assert not v6.healthy and v6.holder is not None and v6.holder.pid == 999999


def test_wildcard_holder_blocks_and_unknown_owner_is_only_blocked() -> None:
    everywhere = Listener("ipv4", "0.0.0.0", 3307, os.getpid())  # noqa: S104 - data, not a bind
    wildcard = check_forwards([V4], 1, [everywhere], None)
    assert wildcard[0].holder is not None and wildcard[0].holder.pid == os.getpid()
    unknown = check_forwards([V4], 1, [Listener("ipv4", "127.0.0.1", 3307, None)], None)
    assert unknown[0].blocked and unknown[0].holder is None and not unknown[0].healthy
    other_port = check_forwards([V4], 1, [Listener("ipv4", "127.0.0.1", 3308, 1)], None)
    assert other_port[0].detail == "not listening"


def test_most_severe_exit_code_wins() -> None:
    assert most_severe([]) is ExitCode.OK
    assert most_severe([ExitCode.OK, ExitCode.NOT_READY, ExitCode.AUTH]) is ExitCode.AUTH
    assert most_severe([ExitCode.FORWARDING, ExitCode.CONNECTION]) is ExitCode.CONNECTION


def test_runtime_commands_import_no_heavy_module_at_start_up() -> None:
    code = ("import sys, sshwrap.cli.app as a; a._register_commands(); "
            "import sshwrap.cli.commands.runtime; "
            "print(sorted(m for m in ('psutil', 'pexpect', 'tomli_w') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_pure_core_stays_pure() -> None:
    code = ("import sys, sshwrap.core.binds, sshwrap.runtime.system.paths; "
            "print(sorted(m for m in ('subprocess', 'psutil', 'pexpect') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_every_command_is_mapped_to_its_module() -> None:
    """The lazy start-up imports a command's module from COMMAND_MODULES: a command missing
    there, or mapped to the wrong module, would not be found when run by name."""
    import importlib

    from sshwrap.cli import app as cli

    cli._register_commands()
    for name, module in cli.COMMAND_MODULES.items():
        defined_in = {
            **{cli.command_name(c): c.callback.__module__ for c in cli.app.registered_commands
               if c.callback is not None},
            **{g.name: g.typer_instance.registered_commands[0].callback.__module__
               for g in cli.app.registered_groups
               if g.typer_instance is not None and g.typer_instance.registered_commands
               and g.typer_instance.registered_commands[0].callback is not None},
        }
        assert defined_in.get(name) == f"sshwrap.cli.commands.{module}", name
        importlib.import_module(f"sshwrap.cli.commands.{module}")
    names = {cli.command_name(c) for c in cli.app.registered_commands} | {
        g.name for g in cli.app.registered_groups}
    assert names == set(cli.COMMAND_MODULES)


def test_express_lane_imports_nothing_heavy_before_it_connects() -> None:
    """The lane's speed is its light start: no typer, not even typing or socket.py."""
    import sshwrap

    root = str(Path(sshwrap.__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "import sshwrap.cli.express as e, sshwrap.runtime.system.rendezvous; "
            "assert e.parse_up(['up', 'db']) is not None; "
            "print(sorted(m for m in ('typer', 'typing', 'socket', 'pathlib', 'dataclasses', "
            "'json', 'sshwrap.runtime.system.paths') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("read", ["sock_diag", "proc", "either"])
def test_quick_reads_list_the_listeners_psutil_sees_with_their_inodes(read: str) -> None:
    """sock_diag, its /proc fallback and the reader that picks between them each see what a
    psutil scan sees, each socket with the inode its owner holds."""
    import socket

    import psutil

    from sshwrap.runtime.system import listeners, sockdiag

    readers = {"sock_diag": sockdiag.tcp_listeners, "proc": listeners.proc_tcp_listeners,
               "either": listeners.tcp_listeners}
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("127.0.0.1", 0))
        v6.bind(("::1", 0))
        for listener in (v4, v6):
            listener.listen(1)
        inodes = {os.stat(f"/proc/self/fd/{s.fileno()}").st_ino for s in (v4, v6)}
        expected = {(socket.AF_INET, "127.0.0.1", v4.getsockname()[1]),
                    (socket.AF_INET6, "::1", v6.getsockname()[1])}
        def by_psutil() -> set[tuple[str, int]]:
            return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN}

        # Other programs open and close listeners meanwhile: compared on a read between two
        # psutil scans that agree (the host did not change around it).
        for _attempt in range(50):
            before = by_psutil()
            found = readers[read]()
            seen_by_psutil = by_psutil()
            if before == seen_by_psutil:
                break
        own = listeners.socket_inodes(os.getpid())
        ours_attributed = listeners.attributed(found or [], os.getpid())

    assert found is not None and own is not None and ours_attributed is not None
    assert {(ln.address, ln.port) for ln in found} == seen_by_psutil
    ours = {(ln.family, ln.address, ln.port) for ln in found if ln.inode in inodes}
    assert ours == expected
    assert inodes <= own
    assert {(ln.address, ln.port) for ln in ours_attributed if ln.pid == os.getpid()} == {
        (address, port) for _family, address, port in expected}


def test_the_full_scan_sees_unix_sockets_with_their_owner(tmp_path: Path) -> None:
    import socket

    from sshwrap.runtime.system.listeners import Listener, listening_sockets

    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(path)
        unix.listen(1)
        everyone = listening_sockets()
        own = listening_sockets(pid=os.getpid())

    assert Listener("unix", path, None, os.getpid()) in everyone
    assert Listener("unix", path, None, os.getpid()) in own


def test_status_text_shows_a_kept_failure_with_its_exit_code_and_time() -> None:
    import time

    from sshwrap.cli.render import runtime as _registered  # noqa: F401
    from sshwrap.cli.render import to_text
    from sshwrap.usecases.up import StatusReport, TunnelState, TunnelStatus

    failed_at = time.mktime((2026, 3, 1, 12, 30, 5, 0, 0, -1))
    row = TunnelStatus("db", TunnelState.FAILED, None, None, 0, False, (),
                       detail="db: permission denied (publickey)", failure_code=4,
                       failed_at=failed_at)
    text = to_text(StatusReport((row,), ExitCode.UNHEALTHY))
    assert "note: db: permission denied (publickey) [exit 4, since 2026-03-01 12:30:05]" \
        in text



@pytest.mark.parametrize("value", [
    [], {}, [[], {}], {"a": [1, 2.5, -0.0, 1e300, float("inf"), float("nan"), True, None, "x"]},
    [ExitCode.UNHEALTHY, "\u00e9\x1b\u202e", {"k": (1, {"n": []})}], {1: "a key not text"},
    {"nested": [{"deep": [{"deeper": {}}]}]},
])
def test_json_is_indented_as_the_json_module_indents_it(value: object) -> None:
    import json

    from sshwrap.cli.render import indented_json

    assert indented_json(value) == json.dumps(value, indent=2)


def test_status_json_reads_as_asdict_gave_it() -> None:
    import json
    from dataclasses import asdict

    from sshwrap.runtime.observe.results import (
        ForwardStatus,
        StatusReport,
        TunnelState,
        TunnelStatus,
    )

    forward = ForwardStatus("local", "127.0.0.1:4000", "127.0.0.1:80", True, "listening")
    row = TunnelStatus("db", TunnelState.UP, 1234, 12.5, 1, True, (forward, forward),
                       mode="engine", supervisor_pid=5, next_retry=3.5)
    report = StatusReport((row, row), ExitCode.OK)

    assert json.dumps(report.to_json()) == json.dumps([asdict(r) for r in report.tunnels])
    assert StatusReport.from_wire(report.to_wire()) == report


def test_a_stopped_tunnel_is_released_once_its_process_holds_none_of_its_addresses() -> None:
    import socket

    from sshwrap.usecases.down import _still_held

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        forward = ExpectedForward("local", f"127.0.0.1:{port}", "db:3306", host="127.0.0.1",
                                  port=port)
        assert _still_held([forward], os.getpid()) == [f"127.0.0.1:{port}"]
        # The address is taken, but by another process than the stopped tunnel's.
        other = subprocess.Popen(["sleep", "30"])
        try:
            assert _still_held([forward], other.pid) == []
        finally:
            other.kill()
            other.wait()
    assert _still_held([forward], os.getpid()) == []  # nothing listens there any more


def test_a_listener_found_held_is_known_as_its_holders_until_read_again() -> None:
    import socket

    from sshwrap.runtime.observe.readywatch import ReadyWatch
    from sshwrap.runtime.system import listeners

    ready = ReadyWatch()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        found = [ln for ln in listeners.tcp_listeners() or [] if ln.port == port]
        assert not ready.held_before(found, os.getpid())  # never looked at yet
        first = ready.attributed(found, os.getpid())
        assert first is not None and [ln.pid for ln in first] == [os.getpid()]
        assert ready.held_before(found, os.getpid())
        assert not ready.held_before(found, os.getppid())  # not another process's
        # What one watch found is its own: another (another engine's, another command's)
        # reads the descriptors itself.
        assert not ReadyWatch().held_before(found, os.getpid())
        plain = listeners.attributed(found, os.getpid())  # remembers nothing anywhere
        assert plain == first
    assert not ready.held_before([], os.getpid())  # nothing listening: nothing held
