"""``sshwrap add``: from flags or a pasted ssh command line, validated, written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from sshwrap.cli.app import main
from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.store import load_profile_file

from .sshg import argv_settings, view


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_add_from_ssh_command(profiles_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["add", "git", "--tag", "git", "--description", "via bastion", "--",
                         "ssh", "-J", "bastion-host", "-L", "7999:git-server:7999",
                         "test-server", "-N"], capsys)
    assert code == 0 and out.strip() == f"wrote {profiles_dir / 'git.toml'}"
    profile = load_profile_file(profiles_dir / "git.toml")
    assert profile.host == "test-server" and profile.tags == ("git",)
    assert [h.host for h in profile.jump] == ["bastion-host"]
    compiled = view(argv_settings(compile_ssh(profile, HostFacts(ipv6_loopback=True))))
    assert compiled["proxyjump"] == "bastion-host"
    assert compiled["localforward"] == ["[127.0.0.1]:7999 [git-server]:7999",
                                        "[::1]:7999 [git-server]:7999"]


def test_add_from_flags(profiles_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(["add", "web", "--host", "bastion-host", "-L", "8080:web-server:80",
                       "-L", "8443:web-server:443", "-R", "9999:localhost:8888", "-D", "1080",
                       "-J", "u@j:2200", "--user", "me", "--port", "2222", "-C",
                       "--identity-file", "~/.ssh/id_ed25519", "--client", "ssh"], capsys)
    assert code == 0
    profile = load_profile_file(profiles_dir / "web.toml")
    assert [f.describe() for f in profile.forwards] == [
        "local 8080 -> web-server:80", "local 8443 -> web-server:443",
        "remote 9999 -> localhost:8888", "dynamic 1080 -> SOCKS"]
    assert (profile.user, profile.port, profile.compression) == ("me", 2222, True)


def test_flags_override_the_command_line(profiles_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["add", "x", "--dry-run", "--host", "other", "--user", "me", "--",
                         "ssh", "-l", "them", "-L", "1:a:1", "first"], capsys)
    assert code == 0
    assert 'host = "other"' in out and 'user = "me"' in out
    assert list(profiles_dir.iterdir()) == []


def test_nothing_is_written_on_error(profiles_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["add", "bad", "--", "ssh", "-w", "0:0", "-L", "1:a:1", "h", "ls"],
                        capsys)
    assert code == 2
    assert "sshwrap: error: ssh command line: -w: " in err
    assert "remote command ('ls')" in err
    code, _, err = _run(["add", "bad", "--host", "h", "-L", "0.0.0.0:80:x:80"], capsys)
    assert code == 2 and "forward[0].listen" in err and "beyond loopback" in err
    code, _, err = _run(["add", "bad", "--host", "h", "-L", "80"], capsys)
    assert code == 2 and "command line: -L 80: " in err
    assert list(profiles_dir.iterdir()) == []


def test_existing_profile_needs_force(profiles_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["add", "db", "--host", "h1", "-L", "1:a:1"], capsys)[0] == 0
    before = (profiles_dir / "db.toml").read_text()
    code, _, err = _run(["add", "db", "--host", "h2", "-L", "1:a:1"], capsys)
    assert code == 2 and "exists already" in err and "--force" in err
    assert (profiles_dir / "db.toml").read_text() == before
    assert _run(["add", "db", "--host", "h2", "-L", "1:a:1", "--force"], capsys)[0] == 0
    assert load_profile_file(profiles_dir / "db.toml").host == "h2"
    assert sorted(p.name for p in profiles_dir.iterdir()) == ["db.toml"]


def test_json_output(profiles_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["add", "j", "--host", "h", "-D", "1080", "--json"], capsys)
    assert code == 0 and '"written": true' in out
