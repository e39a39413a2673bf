"""import: Host entries with forwards become profiles, read through ssh -G."""

from __future__ import annotations

from pathlib import Path

import pytest

from sshwrap.errors import InvalidInput
from sshwrap.sshconfig.effective import loopback_form, parse_dump, seen_forwards
from sshwrap.sshconfig.openssh import dump
from sshwrap.store import ProfileStore
from sshwrap.usecases import sshconfig as usecase
from sshwrap.usecases import sshimport

from .conftest import Workspace
from .test_sync import cli

CONFIG = """\
# tunnels
Include {extra}

Host *
    User deploy

Host dbtunnel
    HostName db.example.net
    Port 2200
    LocalForward 3307 db.internal:3306
    LocalForward 127.0.0.1:8080 web.internal:80
    DynamicForward 1080
    RemoteForward 9022 localhost:22
    IdentityFile ~/.ssh/db_key

Host relay second-name
\tHostName relay.example.net
\tProxyJump jump.example.net
\tlocalforward=5432 pg.internal:5432

Host legacy
    ProxyCommand nc %h %p
    LocalForward 7000 x:7000

Host web*
    LocalForward 9000 w:9000

Host nofw
    HostName plain.example.net
"""

EXTRA = "Host relay\n    User relayuser\n"


@pytest.fixture
def user_config(workspace: Workspace) -> Path:
    extra = workspace.root / "extra.conf"
    extra.write_text(EXTRA)
    workspace.config.write_text(CONFIG.format(extra=extra))
    return workspace.config


def forwards_seen(config: Path, host: str) -> set[object]:
    result = dump(config, host)
    assert result.ok, result.stderr
    return {loopback_form(f) for f in seen_forwards(parse_dump(result.stdout))}


def test_import_uses_effective_values(workspace: Workspace, user_config: Path) -> None:
    result = sshimport.import_hosts(workspace.store, config_file=user_config)
    assert [i.name for i in result.imported] == ["dbtunnel", "relay"]
    skipped = {s.host: s.reason for s in result.skipped}
    assert "ProxyCommand" in skipped["legacy"]
    assert "wildcard" in skipped["web*"]
    assert "another name of Host relay" in skipped["second-name"]
    assert "nofw" not in skipped

    db = workspace.store.load("dbtunnel")
    assert (db.host, db.user, db.port, db.identity_file) == (
        "db.example.net", "deploy", 2200, "~/.ssh/db_key")
    relay = workspace.store.load("relay")
    assert (relay.host, relay.user, relay.port) == ("relay.example.net", "relayuser", None)
    assert [hop.render() for hop in relay.jump] == ["jump.example.net"]
    assert relay.identity_file is None  # OpenSSH's default keys are not written out


def test_imported_profiles_compile_back_to_the_same_forwards(
        workspace: Workspace, user_config: Path) -> None:
    sshimport.import_hosts(workspace.store, config_file=user_config)
    synced = workspace.root / "synced" / "config"
    synced.parent.mkdir()
    usecase.sync(workspace.store, config_file=synced)
    for host in ("dbtunnel", "relay"):
        assert forwards_seen(synced, host) == forwards_seen(user_config, host)
    assert len(forwards_seen(synced, "dbtunnel")) == 4


def test_existing_profile_is_kept_without_force(workspace: Workspace,
                                                user_config: Path) -> None:
    mine = workspace.add_profile("dbtunnel")
    before = mine.read_bytes()
    result = sshimport.import_hosts(workspace.store, ["dbtunnel"], config_file=user_config)
    assert result.imported == () and not result.ok
    assert "exists already" in result.skipped[0].reason
    assert mine.read_bytes() == before

    forced = sshimport.import_hosts(workspace.store, ["dbtunnel"], config_file=user_config,
                                  force=True)
    assert [i.name for i in forced.imported] == ["dbtunnel"]
    assert workspace.store.load("dbtunnel").port == 2200


def test_cli_import_named_host(workspace: Workspace, user_config: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("import", "relay", "--file", str(user_config)) == 0
    assert "relay" in capsys.readouterr().out
    assert cli("import", "legacy", "nosuch", "--file", str(user_config)) == 2
    out = capsys.readouterr().out
    assert "ProxyCommand" in out and "no Host entry with forwards" in out
    assert sorted(p.name for p in workspace.store.write_dir.iterdir()) == ["relay.toml"]


def test_generated_hosts_are_not_imported(workspace: Workspace) -> None:
    workspace.add_profile("db")
    usecase.sync(workspace.store, config_file=workspace.config)
    other = ProfileStore((workspace.root / "other",))
    result = sshimport.import_hosts(other, config_file=workspace.config)
    assert result.imported == ()
    copy_of_owned = workspace.root / "copy-of-owned"
    copy_of_owned.write_bytes(workspace.owned.read_bytes())
    with pytest.raises(InvalidInput, match="sshwrap's own"):
        sshimport.import_hosts(other, config_file=copy_of_owned)


def test_corpus_file_with_forwards(workspace: Workspace) -> None:
    workspace.use_corpus("09-match-final-originalhost-user.conf")
    result = sshimport.import_hosts(workspace.store, config_file=workspace.config)
    assert {i.name for i in result.imported} == {"conflux", "abacus"}
    for name in ("conflux", "abacus"):
        profile = workspace.store.load(name)
        assert len(profile.forwards) == len(forwards_seen(workspace.config, name))
