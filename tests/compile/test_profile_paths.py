"""Relative file paths in a profile are taken from the profile's own folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from sshwrap.errors import InvalidInput
from sshwrap.store import ProfileStore

BASE = 'host = "h"\n[[forward]]\ntype = "dynamic"\nlisten = 1080\n'


def test_relative_paths_are_anchored_to_the_profile_folder(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "rel.toml").write_text(
        'identity_file = "keys/id_ed25519"\nssh_config_file = "../ssh/config"\n' + BASE)
    (folder / "abs.toml").write_text(
        'identity_file = "~/.ssh/id"\nssh_config_file = "/etc/ssh/ssh_config"\n' + BASE)

    rel = ProfileStore((folder,)).load("rel")
    kept = ProfileStore((folder,)).load("abs")

    assert rel.identity_file == str(folder / "keys" / "id_ed25519")
    assert rel.ssh_config_file == str(folder / ".." / "ssh" / "config")
    assert (kept.identity_file, kept.ssh_config_file) == ("~/.ssh/id", "/etc/ssh/ssh_config")


def test_a_folder_ssh_could_not_be_given_is_bad_input_naming_file_and_key(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "my profiles"
    folder.mkdir()
    path = folder / "rel.toml"
    path.write_text('identity_file = "id"\n' + BASE)

    with pytest.raises(InvalidInput) as raised:
        ProfileStore((folder,)).load("rel")

    (line,) = raised.value.lines()
    assert line.startswith(f"{path}: identity_file: relative path taken from the profile's")


def _forward(kind: str, listen: str, to: str) -> str:
    return f'host = "h"\n[[forward]]\ntype = "{kind}"\nlisten = "{listen}"\nto = "{to}"\n'


def test_local_side_sockets_are_anchored_to_the_profile_folder(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "lsock.toml").write_text(_forward("local", "../x.sock", "/run/app.sock"))
    (folder / "rsock.toml").write_text(_forward("remote", "/run/srv.sock", "./here.sock"))
    store = ProfileStore((folder,))
    local = store.load("lsock").forwards[0]
    remote = store.load("rsock").forwards[0]
    assert local.listen.render() == str(folder / ".." / "x.sock")
    assert local.to is not None and local.to.render() == "/run/app.sock"
    assert remote.listen.render() == "/run/srv.sock"
    assert remote.to is not None and remote.to.render() == f"{folder}/./here.sock"


@pytest.mark.parametrize(("text", "key"), [
    (_forward("local", "/tmp/l.sock", "./srv.sock"), "forward[0].to"),
    (_forward("local", "/tmp/l.sock", "~/srv.sock"), "forward[0].to"),
    (_forward("remote", "../x.sock", "/run/app.sock"), "forward[0].listen"),
])
def test_server_side_relative_sockets_are_refused(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "srv.toml").write_text(text)
    with pytest.raises(InvalidInput) as caught:
        ProfileStore((tmp_path,)).load("srv")
    (problem,) = caught.value.problems
    assert problem.key == key and "write an absolute path" in problem.message


def test_a_bad_file_is_reported_on_its_own(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(BASE)
    (tmp_path / "binary.toml").write_bytes(b'host = "\xff"\n')
    (tmp_path / "deep.toml").write_text("x = " + "[" * 20000 + "]" * 20000 + "\n")
    (tmp_path / "typo.toml").write_text("host = [\n")
    profiles, problems = ProfileStore((tmp_path,)).load_all()
    assert [p.name for p in profiles] == ["good"]
    assert sorted(Path(p.file).name for p in problems) == [
        "binary.toml", "deep.toml", "typo.toml"]
    assert all(p.key == "" for p in problems)


@pytest.mark.parametrize("name", ["../../../../var/log/dpkg", "a;b", "x\x1b[2J", "", "-h"])
def test_a_name_that_is_no_profile_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ProfileStore((tmp_path,)).load(name)
    assert "\x1b" not in str(caught.value)
