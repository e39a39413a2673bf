"""config sync and remove with real OpenSSH (ssh -G): the 30 real configs and the edge cases."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from sshwrap.cli.app import main
from sshwrap.errors import InvalidInput, StateConflict
from sshwrap.machine import host_facts
from sshwrap.sshconfig import edit, owned
from sshwrap.sshconfig.effective import missing_forwards, parse_dump
from sshwrap.sshconfig.files import replace_checked, snapshot
from sshwrap.sshconfig.openssh import dump
from sshwrap.store import ProfileStore
from sshwrap.usecases import sshconfig as usecase

from .conftest import DATA, DB_PROFILE, Workspace
from .test_edit import config_files

CORPUS = sorted(p.name for p in DATA.glob("*.conf"))

# Every corpus file parses with this OpenSSH (SOURCES.md). Their Match exec commands are
# "true", "false" or "echo | grep" (07, 08, 22, 23, 29) and so are harmless to run; their
# relative and "~" Includes name files that do not exist here, which ssh ignores. So ssh -G
# is checked for all 30. Some set a value before the first Host block, which wins over ours
# (OpenSSH keeps the first value it reads); none of the 30 does so for HostName, User or Port.


def cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def effective(config: Path, host: str) -> dict[str, list[str]]:
    result = dump(config, host)
    assert result.ok, result.stderr
    return parse_dump(result.stdout)


def assert_ssh_agrees(config: Path, store: ProfileStore, name: str, *,
                      globals_first: bool = False) -> None:
    """ssh -G shows every forward of the profile, and its host, user and port unless the
    file sets a value before its first block (OpenSSH keeps the first value it reads)."""
    profile = store.load(name)
    options = effective(config, name)
    assert missing_forwards(profile, host_facts(), options) == []
    if globals_first:
        return
    assert options["hostname"] == [profile.host]
    assert options["user"] == [profile.user]
    assert options["port"] == [str(profile.port)]


@pytest.mark.parametrize("name", CORPUS, ids=lambda n: n[:2])
def test_corpus_sync_is_honoured_idempotent_and_removable(workspace: Workspace,
                                                         name: str) -> None:
    original = workspace.use_corpus(name)
    workspace.add_profile("db")
    result = usecase.sync(workspace.store, config_file=workspace.config)
    assert result.changed and result.warnings == ()
    assert_ssh_agrees(workspace.config, workspace.store, "db")
    synced, stat_before = workspace.config.read_bytes(), workspace.config.stat()

    again = usecase.sync(workspace.store, config_file=workspace.config)
    assert not again.changed
    assert workspace.config.read_bytes() == synced
    assert workspace.config.stat().st_mtime_ns == stat_before.st_mtime_ns
    assert workspace.config.stat().st_ino == stat_before.st_ino

    removed = usecase.remove(config_file=workspace.config)
    assert removed.config_changed and removed.owned_removed
    assert workspace.config.read_bytes() == original
    assert not workspace.owned.exists()
    assert (workspace.config.parent / "config.sshwrap-backup").read_bytes() == synced


def test_cli_dry_run_prints_a_diff_and_changes_nothing(
        workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    original = workspace.use_corpus("12-crlf-windows.conf")
    workspace.add_profile("db")
    assert cli("config", "sync", "--dry-run", "--file", str(workspace.config)) == 0
    out = capsys.readouterr().out
    assert f"+++ {workspace.config} (after)" in out
    assert "+Include " in out and "+Host db" in out
    assert workspace.config.read_bytes() == original
    assert not workspace.owned.exists()


def test_new_config_is_created_0600(workspace: Workspace) -> None:
    workspace.add_profile("db")
    usecase.sync(workspace.store, config_file=workspace.config)
    assert workspace.config.stat().st_mode & 0o777 == 0o600
    assert workspace.owned.stat().st_mode & 0o777 == 0o600
    assert_ssh_agrees(workspace.config, workspace.store, "db")


def test_mode_is_kept(workspace: Workspace) -> None:
    workspace.use_corpus("05-key-equals-value.conf")
    workspace.config.chmod(0o640)
    workspace.add_profile("db")
    usecase.sync(workspace.store, config_file=workspace.config)
    assert workspace.config.stat().st_mode & 0o777 == 0o640
    backup = workspace.config.parent / "config.sshwrap-backup"
    assert backup.stat().st_mode & 0o777 == 0o640


def test_host_star_first_does_not_shadow_the_profile(workspace: Workspace) -> None:
    workspace.config.write_bytes(b"Host *\n    HostName other.example\n    User other\n"
                                 b"    Port 2200\n")
    workspace.add_profile("db")
    usecase.sync(workspace.store, config_file=workspace.config)
    lines = workspace.config.read_bytes().splitlines()
    assert lines.index(edit.MARKER) < lines.index(b"Host *")
    assert_ssh_agrees(workspace.config, workspace.store, "db")


def test_global_value_before_the_include_is_reported(workspace: Workspace) -> None:
    workspace.config.write_bytes(b"User everyone\nHost x\n")
    workspace.add_profile("db")
    result = usecase.sync(workspace.store, config_file=workspace.config)
    assert any("user everyone, not alice" in w for w in result.warnings)


def test_symlinked_config_stays_a_link(workspace: Workspace) -> None:
    dotfiles = workspace.root / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "ssh_config"
    target.write_bytes(b"Compression yes\nHost a\n  HostName a.example\n")
    original = target.read_bytes()
    workspace.config.symlink_to(target)
    workspace.add_profile("db")
    usecase.sync(workspace.store, config_file=workspace.config)
    assert workspace.config.is_symlink()
    assert os.readlink(workspace.config) == str(target)
    assert edit.current_include(target.read_bytes()) is not None
    assert workspace.owned.is_file() and not (dotfiles / "sshwrap.conf").exists()
    assert (dotfiles / "ssh_config.sshwrap-backup").read_bytes() == original
    assert_ssh_agrees(workspace.config, workspace.store, "db")
    usecase.remove(config_file=workspace.config)
    assert workspace.config.is_symlink()
    assert target.read_bytes() == original


def test_read_only_config_is_refused(workspace: Workspace,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    original = workspace.use_corpus("21-host-star-first-bracket-patterns.conf")
    workspace.config.chmod(0o444)
    workspace.add_profile("db")
    assert cli("config", "sync", "--file", str(workspace.config)) == 2
    err = capsys.readouterr().err
    assert f"sshwrap: error: {workspace.config}: is read-only (mode 0444)" in err
    assert workspace.config.read_bytes() == original
    assert workspace.config.stat().st_mode & 0o777 == 0o444
    assert sorted(p.name for p in workspace.config.parent.iterdir()) == ["config"]


def test_config_changed_during_sync_is_refused(workspace: Workspace,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    workspace.use_corpus("07-match-exec-keyvalue-mixed-indent.conf")
    workspace.add_profile("db")
    real_check = usecase._check_with_openssh
    edited = b"# edited by the user meanwhile\n"

    def check_then_edit(*args: object, **kwargs: object) -> list[str]:
        warnings = real_check(*args, **kwargs)  # type: ignore[arg-type]
        with workspace.config.open("ab") as handle:
            handle.write(edited)
        return warnings

    monkeypatch.setattr(usecase, "_check_with_openssh", check_then_edit)
    with pytest.raises(StateConflict, match="changed while sshwrap was preparing"):
        usecase.sync(workspace.store, config_file=workspace.config)
    assert workspace.config.read_bytes().endswith(edited)
    assert edit.current_include(workspace.config.read_bytes()) is None
    assert not workspace.owned.exists()


def test_change_right_before_the_rename_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"Host a\n")
    snap = snapshot(path)
    path.write_bytes(b"Host a\n  User me\n")
    with pytest.raises(StateConflict):
        replace_checked(snap, b"replaced\n")
    assert path.read_bytes() == b"Host a\n  User me\n"
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_openssh_rejection_writes_nothing(workspace: Workspace) -> None:
    broken = b"Host a\n    NoSuchOption yes\n"
    workspace.config.write_bytes(broken)
    workspace.add_profile("db")
    with pytest.raises(InvalidInput, match="OpenSSH rejects") as info:
        usecase.sync(workspace.store, config_file=workspace.config)
    assert str(workspace.config) in info.value.message
    assert "sshwrap-check" not in info.value.message
    assert workspace.config.read_bytes() == broken
    assert not workspace.owned.exists()


def test_clear_all_forwardings_before_include_is_refused(workspace: Workspace) -> None:
    workspace.config.write_bytes(b"ClearAllForwardings yes\n")
    workspace.add_profile("db")
    with pytest.raises(InvalidInput, match="would not show local"):
        usecase.sync(workspace.store, config_file=workspace.config)
    assert workspace.config.read_bytes() == b"ClearAllForwardings yes\n"


@pytest.mark.parametrize("name, text", [
    ("evil*", DB_PROFILE),
    ("evil", DB_PROFILE + '\n[options]\nProxyCommand = "sh -c id"\n'),
    ("evil", DB_PROFILE.replace('"db.example.net"', '"x\\n  ProxyCommand sh"')),
    ("evil", DB_PROFILE.replace('user = "alice"', 'user = "a lice"')),
])
def test_hostile_profile_is_refused(workspace: Workspace, capsys: pytest.CaptureFixture[str],
                                    name: str, text: str) -> None:
    original = workspace.use_corpus("01-tiny-single-include.conf")
    workspace.add_profile(name, text)
    assert cli("config", "sync", "--file", str(workspace.config)) == 2
    assert "sshwrap: error:" in capsys.readouterr().err
    assert workspace.config.read_bytes() == original
    assert not workspace.owned.exists()


def test_profile_with_its_own_config_file_cannot_be_synced(workspace: Workspace) -> None:
    workspace.add_profile("db", DB_PROFILE + 'ssh_config_file = "/etc/ssh/other"\n')
    with pytest.raises(InvalidInput, match="ssh_config_file"):
        usecase.sync(workspace.store, config_file=workspace.config)


def test_named_sync_keeps_other_sections(workspace: Workspace) -> None:
    workspace.add_profile("db")
    workspace.add_profile("web", DB_PROFILE.replace("3307", "8080").replace("1080", "1081")
                          .replace("9022", "9023"))
    usecase.sync(workspace.store, ["db"], config_file=workspace.config)
    assert set(owned.parse_sections(workspace.owned.read_bytes())) == {"db"}
    usecase.sync(workspace.store, ["web"], config_file=workspace.config)
    assert set(owned.parse_sections(workspace.owned.read_bytes())) == {"db", "web"}
    assert_ssh_agrees(workspace.config, workspace.store, "db")
    assert_ssh_agrees(workspace.config, workspace.store, "web")
    (workspace.store.write_dir / "web.toml").unlink()
    usecase.sync(workspace.store, config_file=workspace.config)
    assert set(owned.parse_sections(workspace.owned.read_bytes())) == {"db"}


def test_a_foreign_sshwrap_conf_is_not_overwritten(workspace: Workspace) -> None:
    workspace.owned.write_bytes(b"Host mine\n")
    workspace.add_profile("db")
    with pytest.raises(InvalidInput, match="not written by sshwrap"):
        usecase.sync(workspace.store, config_file=workspace.config)
    assert workspace.owned.read_bytes() == b"Host mine\n"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=config_files())
def test_generated_configs_with_openssh(workspace: Workspace, data: bytes) -> None:
    workspace.add_profile("db")
    with tempfile.TemporaryDirectory(dir=workspace.root) as tmp:
        config = Path(tmp) / "config"
        config.write_bytes(data)
        first = usecase.sync(workspace.store, config_file=config)
        assert first.changed
        assert_ssh_agrees(config, workspace.store, "db", globals_first=True)
        mtime = config.stat().st_mtime_ns
        assert not usecase.sync(workspace.store, config_file=config).changed
        assert config.stat().st_mtime_ns == mtime
        usecase.remove(config_file=config)
        assert config.read_bytes() == data


def test_kill_9_never_leaves_a_broken_config(workspace: Workspace) -> None:
    """sync and remove in a child killed at random moments: the config is always whole."""
    original = workspace.use_corpus("08-match-negated-exec-proxyjump.conf")
    workspace.add_profile("db")
    usecase.sync(workspace.store, config_file=workspace.config)
    with_include = workspace.config.read_bytes()
    usecase.remove(config_file=workspace.config)
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    outcomes = set()
    for round_ in range(40):
        port = 3000 + round_  # a different profile each round, so every sync writes
        workspace.add_profile("db", DB_PROFILE.replace("3307", str(port)))
        command = ["config", "sync"] if round_ % 2 == 0 else ["config", "remove"]
        child = subprocess.Popen(
            [sys.executable, "-m", "sshwrap", *command, "--file", str(workspace.config)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            child.wait(timeout=rng.uniform(0.05, 0.9))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        now = workspace.config.read_bytes()
        assert now in (original, with_include)
        outcomes.add((child.returncode, now == original))
        if workspace.owned.exists():
            data = workspace.owned.read_bytes()
            # the block ends with its last forward (sshwrap's own options come first)
            assert owned.is_owned(data) and data.endswith(b"localhost:9022 localhost:22\n")
    assert any(code == -signal.SIGKILL for code, _ in outcomes)
    # whatever temp files the killed runs left, the next write removes them
    usecase.sync(workspace.store, config_file=workspace.config)
    assert not [p for p in workspace.config.parent.iterdir() if p.name.endswith(".sshwrap-tmp")]


def test_default_file_is_home_ssh_config(workspace: Workspace,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Without --file the config is $HOME/.ssh/config (HOME is a temp folder here)."""
    workspace.config.parent.rmdir()
    workspace.add_profile("db")
    assert cli("config", "sync", "--json") == 0
    assert '"changed": true' in capsys.readouterr().out
    assert workspace.config.parent.stat().st_mode & 0o777 == 0o700
    # HOME is not the login user's home, so the Include names the file by absolute path
    assert edit.current_include(workspace.config.read_bytes()) == (
        b"Include " + str(workspace.owned).encode())
    assert_ssh_agrees(workspace.config, workspace.store, "db")
    assert cli("config", "remove") == 0
    assert workspace.config.read_bytes() == b""


def test_temp_files_of_a_killed_run_are_cleaned_up(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"Host a\n")
    stale = tmp_path / ".config.abc123.sshwrap-tmp"
    fresh = tmp_path / ".config.def456.sshwrap-tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written by another run")
    os.utime(stale, (1, 1))
    replace_checked(snapshot(path), b"Host b\n")
    assert path.read_bytes() == b"Host b\n"
    assert not stale.exists() and fresh.exists()
