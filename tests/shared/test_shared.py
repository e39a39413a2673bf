"""Shared connections against the real sshd: one master, forwards added and cancelled with -O."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import tempfile
from pathlib import Path

import psutil
import pytest

from sshwrap.core.model import Profile
from sshwrap.core.parse import parse_profile
from sshwrap.errors import ExitCode, StateUnusable
from sshwrap.runtime.supervise import shared
from sshwrap.runtime.system import rendezvous, state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.ports import list_ports
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord
from sshwrap.sandbox import BannerServer, Sshd, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, TunnelState, down, status, up
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    assert_failure_kept,
    eventually,
    process_gone,
    read_banner_through,
    record_of,
)


def _master(paths: StatePaths, key: str) -> TunnelRecord:
    record = state.read_record(shared.master_paths(paths), shared.master_name(key))
    assert record is not None, "no master record"
    return record


def _local(port: int, banner: BannerServer) -> list[dict[str, object]]:
    return [{"type": "local", "listen": f"127.0.0.1:{port}", "to": f"127.0.0.1:{banner.port}"}]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start_pair(store: ProfileStore, paths: StatePaths, write_profile: ProfileWriter,
                banner: BannerServer) -> tuple[int, int, TunnelRecord]:
    first, second = free_port(), free_port()
    write_profile("alpha", _local(first, banner), share_connection=True)
    write_profile("beta", _local(second, banner), share_connection=True)
    report = up(store, ["alpha", "beta"], paths=paths)
    assert [o.action for o in report.outcomes] == [Action.STARTED] * 2, \
        [o.error for o in report.outcomes]
    alpha, beta = record_of(paths, "alpha"), record_of(paths, "beta")
    assert alpha.shared is not None and alpha.shared == beta.shared
    master = _master(paths, alpha.shared)
    assert alpha.pid == beta.pid == master.pid  # the listeners' owner is the master
    return first, second, master


# -- pure parts ---------------------------------------------------------------------------


def _profile(**keys: object) -> Profile:
    data: dict[str, object] = {"host": "gw", "forward": [
        {"type": "local", "listen": 1, "to": "db:1"}]}
    data.update(keys)
    return parse_profile("p", data)


def test_connection_key_covers_the_destination_not_the_forwards() -> None:
    base = shared.connection_key(_profile())
    same = _profile(tags=["x"], description="d", restart="always", share_connection=True,
                    forward=[{"type": "dynamic", "listen": 9}])
    assert shared.connection_key(same) == base
    for change in ({"host": "gw2"}, {"port": 2222}, {"user": "u"}, {"jump": ["j"]},
                   {"ssh_config_file": "/etc/other"}, {"identity_file": "/k"}):
        assert shared.connection_key(_profile(**change)) != base, change


def test_forward_args_match_the_compiled_specs() -> None:
    local = ExpectedForward("local", "127.0.0.1:8080", "db:5432", host="127.0.0.1", port=8080)
    remote = ExpectedForward("remote", "localhost:9000", "[::1]:80", host="localhost",
                             port=9000)
    dynamic = ExpectedForward("dynamic", "[::1]:1080", None, host="::1", port=1080)
    assert shared.forward_args(local) == ["-L", "127.0.0.1:8080:db:5432"]
    assert shared.forward_args(remote) == ["-R", "localhost:9000:[::1]:80"]
    assert shared.forward_args(dynamic) == ["-D", "[::1]:1080"]


def test_control_dir_is_private_and_short(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="sw", dir="/tmp"))  # pytest's tmp_path is too long
    try:
        near = shared.control_dir(StatePaths(short / "s"), env={})
        assert near == short / "s" / "ctl"
        deep = StatePaths(tmp_path / ("d" * 120))
        far = shared.control_dir(deep, env={"XDG_RUNTIME_DIR": str(short)})
        assert len(str(far / ("k" * rendezvous.KEY_LENGTH))) + rendezvous.SSH_TEMP_SUFFIX \
            <= rendezvous.MAX_SOCKET_PATH
        assert far.parent == short
        for folder in (near, far):
            info = os.lstat(folder)
            assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert shared.control_dir(deep, env={"XDG_RUNTIME_DIR": str(short)}) == far
    finally:
        shutil.rmtree(short)


def test_control_dir_refuses_a_symlink() -> None:
    short = Path(tempfile.mkdtemp(prefix="sw", dir="/tmp"))
    try:
        (short / "elsewhere").mkdir()
        (short / "s").mkdir()
        (short / "s" / "ctl").symlink_to(short / "elsewhere")
        with pytest.raises(StateUnusable, match="ctl: is a symlink"):
            shared.control_dir(StatePaths(short / "s"), env={})
    finally:
        shutil.rmtree(short)


# -- against the sandbox sshd -------------------------------------------------------------


def test_two_profiles_share_one_master_and_both_pass_bytes(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    first, second, master = _start_pair(store, shared_paths, write_profile, banner_server)

    assert read_banner_through("127.0.0.1", first) == (BANNER, ECHO)
    assert read_banner_through("127.0.0.1", second) == (BANNER, ECHO)
    assert "-M" in master.argv and "ControlPersist=no" in master.argv
    ssh_clients = [p for p in psutil.process_iter(["name", "cmdline"])
                   if p.info["name"] == "ssh" and "-p" in (p.info["cmdline"] or [])
                   and str(shared.control_path(shared_paths, master.shared or ""))
                   in (p.info["cmdline"] or [])]
    assert [p.pid for p in ssh_clients] == [master.pid]  # one connection for both
    rows = {r.name: r for r in status(store, paths=shared_paths).tunnels}
    for name in ("alpha", "beta"):
        assert rows[name].state is TunnelState.UP and rows[name].healthy
        assert rows[name].shared and rows[name].pid == master.pid
    owners = {e.port: e.tunnel for e in list_ports(shared_paths, [first, second]).entries}
    assert owners == {first: "alpha,beta", second: "alpha,beta"}


def test_one_down_leaves_the_other_then_the_last_removes_the_master(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    first, second, master = _start_pair(store, shared_paths, write_profile, banner_server)
    control = shared.control_path(shared_paths, master.shared or "")
    assert control.exists()
    # The master is supervised by a thread of the engine that runs both tunnels.
    assert master.mode == "engine"
    assert master.supervisor_pid == record_of(shared_paths, "alpha").supervisor_pid

    assert down(["alpha"], paths=shared_paths).outcomes[0].action is Action.STOPPED

    assert not _listening(first)
    assert not process_gone(master.pid) and control.exists()
    assert read_banner_through("127.0.0.1", second) == (BANNER, ECHO)
    assert _master(shared_paths, master.shared or "").pid == master.pid

    assert down(["beta"], paths=shared_paths).outcomes[0].action is Action.STOPPED

    assert process_gone(master.pid)  # the engine runs on, for other tunnels
    assert not control.exists()
    assert state.recorded_names(shared.master_paths(shared_paths)) == []
    assert not _listening(second)


def test_master_killed_9_both_tunnels_recover(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    first, second, master = _start_pair(store, shared_paths, write_profile, banner_server)

    os.kill(master.pid, signal.SIGKILL)

    def recovered(name: str) -> bool:
        now = state.read_record(shared_paths, name)
        return now is not None and now.phase == "up" and now.pid != master.pid

    eventually(lambda: recovered("alpha") and recovered("beta"), "both back on a new master")
    alpha, beta = record_of(shared_paths, "alpha"), record_of(shared_paths, "beta")
    assert alpha.pid == beta.pid and alpha.restarts >= 1 and beta.restarts >= 1
    assert "shared connection" in (alpha.last_failure or "")
    assert read_banner_through("127.0.0.1", first) == (BANNER, ECHO)
    assert read_banner_through("127.0.0.1", second) == (BANNER, ECHO)
    renewed = _master(shared_paths, master.shared or "")
    assert renewed.pid == alpha.pid and renewed.supervisor_pid == master.supervisor_pid


def test_other_destination_does_not_share_and_share_flag_opts_in(
    *, store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, sshd: Sshd, tmp_path: Path,
) -> None:
    other_config = tmp_path / "other_config"
    shutil.copy(sshd.client.ssh_config, other_config)
    first, second = free_port(), free_port()
    # Neither profile asks for sharing: --share (share=True) does.
    write_profile("near", _local(first, banner_server))
    write_profile("far", _local(second, banner_server), ssh_config_file=str(other_config))

    report = up(store, ["near", "far"], paths=shared_paths, share=True)

    assert [o.action for o in report.outcomes] == [Action.STARTED] * 2
    near, far = record_of(shared_paths, "near"), record_of(shared_paths, "far")
    assert near.shared and far.shared and near.shared != far.shared
    assert near.pid != far.pid
    assert read_banner_through("127.0.0.1", first) == (BANNER, ECHO)
    assert read_banner_through("127.0.0.1", second) == (BANNER, ECHO)


def test_same_listen_on_one_master_is_refused(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    port = free_port()
    write_profile("owner", _local(port, banner_server), share_connection=True)
    write_profile("copycat", _local(port, banner_server), share_connection=True)
    assert up(store, ["owner"], paths=shared_paths).outcomes[0].action is Action.STARTED

    outcome = up(store, ["copycat"], paths=shared_paths).outcomes[0]

    assert outcome.action is Action.FAILED and "already forwarded by tunnel owner" in \
        (outcome.error.message if outcome.error else "")
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)  # the owner's still works


def test_long_state_dir_path_still_works(
    store: ProfileStore, write_profile: ProfileWriter, banner_server: BannerServer,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / ("long-state-directory-" * 6)
    monkeypatch.setenv("SSHWRAP_STATE_DIR", str(root))
    paths = StatePaths(root)
    port = free_port()
    write_profile("deep", _local(port, banner_server), share_connection=True)
    try:
        outcome = up(store, ["deep"], paths=paths).outcomes[0]
        assert outcome.action is Action.STARTED, outcome.error
        record = record_of(paths, "deep")
        control = shared.control_path(paths, record.shared or "")
        assert not control.is_relative_to(root) and control.exists()
        assert stat.S_IMODE(os.lstat(control.parent).st_mode) == 0o700
        assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)
    finally:
        down(all_tunnels=True, paths=paths)
    assert not control.exists()
    assert state.recorded_names(shared.master_paths(paths)) == []
    assert not control.parent.exists()  # the engine took it as it exited


def test_supervisor_killed_9_leaves_no_master(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("lonely", _local(free_port(), banner_server), share_connection=True)
    assert up(store, ["lonely"], paths=shared_paths).outcomes[0].action is Action.STARTED
    record = record_of(shared_paths, "lonely")
    master = _master(shared_paths, record.shared or "")

    os.kill(record.supervisor_pid or 0, signal.SIGKILL)

    # The master's supervisor was a thread of the engine: the master dies with it
    # (parent-death signal), and the next status, which shows the tunnel failed, cleans up.
    eventually(lambda: process_gone(master.pid) and process_gone(master.supervisor_pid or 0),
                "the master and the engine are gone")
    assert master.supervisor_pid == record.supervisor_pid
    row = status(store, ["lonely"], paths=shared_paths).tunnels[0]
    assert row.state is TunnelState.FAILED and "engine" in row.detail
    assert not shared.control_path(shared_paths, record.shared or "").exists()
    assert state.recorded_names(shared.master_paths(shared_paths)) == []
    # Killed, the engine could not take its control folder along: the next engine of this
    # state dir would, as it exits; here it is tidied as that engine would.
    shared.tidy_control_dir(shared_paths)


def test_authentication_failure_is_reported_and_leaves_nothing(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    write_profile("stranger", _local(free_port(), banner_server), share_connection=True,
                  user="nobody-here")

    outcome = up(store, ["stranger"], paths=shared_paths).outcomes[0]

    assert outcome.action is Action.FAILED
    assert outcome.exit_code == ExitCode.AUTH, outcome.error
    kept = assert_failure_kept(shared_paths, "stranger", ExitCode.AUTH)
    assert outcome.error is not None and kept.last_failure == outcome.error.message
    assert state.recorded_names(shared.master_paths(shared_paths)) == []


def test_down_all_at_once_removes_the_master_before_returning(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    _first, _second, master = _start_pair(store, shared_paths, write_profile, banner_server)

    report = down(all_tunnels=True, paths=shared_paths)  # both supervisors stop in parallel

    assert [o.action for o in report.outcomes] == [Action.STOPPED] * 2
    assert process_gone(master.pid)
    # down --all ends the idle engine too; it has let go of its lock, and exits.
    eventually(lambda: process_gone(master.supervisor_pid or 0), "the engine exited")
    assert state.recorded_names(shared.master_paths(shared_paths)) == []
    with contextlib.suppress(FileNotFoundError):  # its folder gone with the engine
        assert not shared.control_path(shared_paths, master.shared or "", create=False).exists()


def test_tunnels_of_one_connection_show_its_rtt_and_their_own_open_connections(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, sshd: Sshd,
) -> None:
    first, _second, master = _start_pair(store, shared_paths, write_profile, banner_server)
    with socket.create_connection(("127.0.0.1", first), timeout=10) as conn:
        assert conn.recv(len(BANNER)) == BANNER
        rows = {row.name: row for row in status(store, ["alpha", "beta"],
                                                paths=shared_paths).tunnels}
    # One connection to the sshd, the master's: both rows give its round-trip time.
    assert [c.raddr.port for c in psutil.Process(master.pid).net_connections("tcp")
            if c.raddr and c.raddr.port == sshd.port] == [sshd.port]
    assert rows["alpha"].rtt_ms is not None and rows["alpha"].rtt_ms == rows["beta"].rtt_ms
    assert [f.open for f in rows["alpha"].forwards] == [1]
    assert [f.open for f in rows["beta"].forwards] == [0]
