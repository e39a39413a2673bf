"""Stale unix-socket files: removed only when they are our dead sockets, with real files."""

from __future__ import annotations

import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.core.model import Forward, ForwardType, Profile, TcpAddress, UnixAddress
from sshwrap.errors import ForwardingFailed
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.unixsock import clear_stale_listeners, clear_stale_socket
from sshwrap.sandbox import BannerServer
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, up
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    _banner_and_echo,
    eventually,
    record_of,
)
from tests.shared.conftest import shared_paths  # noqa: F401 - the fixture


def _stale_socket(path: Path) -> Path:
    """A socket file nobody listens on: what a killed client leaves behind."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    return path


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(4)
        yield path


def test_nothing_there_is_nothing_to_do(tmp_path: Path) -> None:
    assert clear_stale_socket(tmp_path / "absent.sock") is False


def test_a_stale_socket_of_ours_is_removed(tmp_path: Path) -> None:
    path = _stale_socket(tmp_path / "stale.sock")
    assert clear_stale_socket(path) is True
    assert not os.path.lexists(path)


def test_a_socket_someone_listens_on_stays(listener: Path) -> None:
    with pytest.raises(ForwardingFailed, match="a program is listening on it"):
        clear_stale_socket(listener)
    assert stat.S_ISSOCK(os.lstat(listener).st_mode)


def test_a_regular_file_stays_untouched(tmp_path: Path) -> None:
    path = tmp_path / "important.txt"
    path.write_text("keep me\n")
    with pytest.raises(ForwardingFailed, match=f"{path}: the path exists and is a regular file"):
        clear_stale_socket(path)
    assert path.read_text() == "keep me\n"


def test_a_directory_stays(tmp_path: Path) -> None:
    path = tmp_path / "dir.sock"
    path.mkdir()
    (path / "inside").write_text("x")
    with pytest.raises(ForwardingFailed, match="is a directory"):
        clear_stale_socket(path)
    assert (path / "inside").read_text() == "x"


def test_a_symlink_to_a_stale_socket_is_not_followed(tmp_path: Path) -> None:
    target = _stale_socket(tmp_path / "target.sock")
    link = tmp_path / "link.sock"
    link.symlink_to(target)
    with pytest.raises(ForwardingFailed, match="is a symbolic link"):
        clear_stale_socket(link)
    assert link.is_symlink() and stat.S_ISSOCK(os.lstat(target).st_mode)


def test_a_dangling_symlink_stays(tmp_path: Path) -> None:
    link = tmp_path / "dangling.sock"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ForwardingFailed, match="is a symbolic link"):
        clear_stale_socket(link)
    assert link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another user needs root")
def test_another_users_stale_socket_stays(tmp_path: Path) -> None:
    path = _stale_socket(tmp_path / "theirs.sock")
    os.chown(path, 65534, 65534)
    with pytest.raises(ForwardingFailed, match="belongs to uid 65534"):
        clear_stale_socket(path)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_only_local_unix_listen_paths_of_a_profile_are_cleared(tmp_path: Path) -> None:
    local = _stale_socket(tmp_path / "local.sock")
    # a remote forward's listen path is on the server: a local file of that name is not ours
    remote = _stale_socket(tmp_path / "remote.sock")
    profile = Profile("p", "h", forwards=(
        Forward(ForwardType.LOCAL, UnixAddress(str(local)), TcpAddress("127.0.0.1", 1)),
        Forward(ForwardType.REMOTE, UnixAddress(str(remote)), TcpAddress("127.0.0.1", 1)),
        Forward(ForwardType.LOCAL, TcpAddress(None, 1), TcpAddress("127.0.0.1", 2)),
    ))
    clear_stale_listeners(profile)
    assert not os.path.lexists(local) and os.path.lexists(remote)


def _banner_through_unix(path: Path) -> tuple[bytes, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        return _banner_and_echo(conn)


@pytest.mark.sshd
def test_kill_9_of_a_unix_listeners_ssh_is_restored(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    path = tmp_path / "tunnel.sock"
    write_profile("unixy", [{"type": "local", "listen": str(path),
                             "to": f"127.0.0.1:{banner_server.port}"}])
    outcome = up(store, ["unixy"], paths=runtime_paths).outcomes[0]
    assert outcome.action is Action.STARTED, outcome.error
    first = record_of(runtime_paths, "unixy")
    assert first.supervised and _banner_through_unix(path) == (BANNER, ECHO)

    os.kill(first.pid, signal.SIGKILL)

    def restored() -> bool:
        now = state.read_record(runtime_paths, "unixy")
        return now is not None and now.pid != first.pid and now.phase == "up"

    eventually(restored, "a new client verified on the same socket path")
    assert record_of(runtime_paths, "unixy").restarts == 1
    assert _banner_through_unix(path) == (BANNER, ECHO)


@pytest.mark.sshd
def test_up_alone_binds_over_a_stale_socket_and_never_over_a_file(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    stale = _stale_socket(tmp_path / "stale.sock")
    write_profile("alone", [{"type": "local", "listen": str(stale),
                             "to": f"127.0.0.1:{banner_server.port}"}], restart="no")
    outcome = up(store, ["alone"], paths=runtime_paths).outcomes[0]
    assert outcome.action is Action.STARTED, outcome.error
    assert _banner_through_unix(stale) == (BANNER, ECHO)

    kept = tmp_path / "important.txt"
    kept.write_text("keep me\n")
    write_profile("onfile", [{"type": "local", "listen": str(kept),
                              "to": f"127.0.0.1:{banner_server.port}"}], restart="no")
    refused = up(store, ["onfile"], paths=runtime_paths).outcomes[0]
    assert isinstance(refused.error, ForwardingFailed), refused.error
    assert "is a regular file" in str(refused.error)
    assert kept.read_text() == "keep me\n"
    kept_failure = state.read_record(runtime_paths, "onfile")  # failures are state
    assert kept_failure is not None and kept_failure.phase == "failed"
    assert kept_failure.pid == 0 and "is a regular file" in (kept_failure.last_failure or "")


@pytest.mark.sshd
def test_a_supervised_tunnel_never_binds_over_a_file_and_says_why(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    kept = tmp_path / "important.txt"
    kept.write_text("keep me\n")
    write_profile("supfile", [{"type": "local", "listen": str(kept),
                               "to": f"127.0.0.1:{banner_server.port}"}])
    refused = up(store, ["supfile"], paths=runtime_paths).outcomes[0]
    assert isinstance(refused.error, ForwardingFailed), refused.error
    assert refused.error.exit_code == 5
    assert f"unix socket {kept}: the path exists and is a regular file" in str(refused.error)
    assert kept.read_text() == "keep me\n"
    record = state.read_record(runtime_paths, "supfile")
    assert record is not None and record.phase == "failed" and record.failure_code == 5


@pytest.mark.sshd
def test_a_shared_connection_adds_a_unix_forward_over_a_stale_socket(
    store: ProfileStore, shared_paths: StatePaths, write_profile: ProfileWriter,  # noqa: F811
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    stale = _stale_socket(tmp_path / "shared.sock")
    write_profile("first", [{"type": "local", "listen": str(tmp_path / "first.sock"),
                             "to": f"127.0.0.1:{banner_server.port}"}], share_connection=True)
    write_profile("second", [{"type": "local", "listen": str(stale),
                              "to": f"127.0.0.1:{banner_server.port}"}], share_connection=True)
    report = up(store, ["first", "second"], paths=shared_paths)
    assert [o.action for o in report.outcomes] == [Action.STARTED] * 2, \
        [o.error for o in report.outcomes]
    assert record_of(shared_paths, "second").shared is not None
    assert _banner_through_unix(stale) == (BANNER, ECHO)
