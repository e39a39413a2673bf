"""Host keys against a real sshd: unknown, trusted with 'trust', changed, and pinned."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sshwrap.runtime.client.hostkeys import fingerprint, keyscan_hint, parse_key_lines
from sshwrap.sandbox import BannerServer, Sshd, free_port
from sshwrap.sshconfig.effective import parse_dump
from tests.auth.auth_helpers import run_cli, write_profile
from tests.helpers import sshd_profile
from tests.runtime.tunnel_helpers import read_banner_through

pytestmark = pytest.mark.sshd


def test_fingerprint_matches_ssh_keygen(sshd: Sshd) -> None:
    pub = sshd.host_key.with_suffix(".pub")
    listed = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                            check=True).stdout.split()[1]
    assert fingerprint(pub.read_text().split()[1]) == listed
    assert parse_key_lines(f"# comment\n[h]:2 {pub.read_text()}")[0].fingerprint == listed


def _fresh_config(tmp_path: Path, sshd: Sshd) -> tuple[Path, Path]:
    """An ssh config with the sandbox client key and an empty known_hosts of its own."""
    known = tmp_path / "known_hosts"
    known.touch(mode=0o600)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    IdentityFile {sshd.client.key}\n    IdentitiesOnly yes\n"
                      f"    UserKnownHostsFile {known}\n    GlobalKnownHostsFile /dev/null\n"
                      "    UpdateHostKeys no\n")
    return config, known


def _profile(sshd: Sshd, config: Path, target: int, listen: int, **keys: object) -> dict:
    return sshd_profile(sshd, target, listen, **{"ssh_config_file": str(config), **keys})


def _server_fingerprint(sshd: Sshd) -> str:
    return fingerprint(sshd.host_public_key.split()[1])


@pytest.mark.usefixtures("stop_all")
def test_unknown_key_fails_then_trust_yes_then_up(sshd: Sshd, tmp_path: Path,
                                                   profiles_dir: Path) -> None:
    config, known = _fresh_config(tmp_path, sshd)
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "hk", _profile(sshd, config, target.port, listen))
        failed = run_cli("up", "hk", "--profiles", str(profiles_dir))
        assert failed.returncode == 4, failed.stderr
        assert "not known yet" in failed.stderr and "sshwrap trust hk" in failed.stderr
        declined = run_cli("trust", "hk", "--profiles", str(profiles_dir), stdin="")
        assert declined.returncode == 4 and not known.read_text()
        trusted = run_cli("trust", "hk", "--yes", "--profiles", str(profiles_dir))
        assert trusted.returncode == 0, trusted.stderr
        assert _server_fingerprint(sshd) in trusted.stdout and "added" in trusted.stdout
        assert f"[127.0.0.1]:{sshd.port} " in known.read_text()
        again = run_cli("trust", "hk", "--yes", "--profiles", str(profiles_dir))
        assert "already-trusted" in again.stdout
        done = run_cli("up", "hk", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")


def test_changed_key_is_never_replaced(sshd: Sshd, tmp_path: Path, profiles_dir: Path) -> None:
    config, known = _fresh_config(tmp_path, sshd)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    stale = f"[127.0.0.1]:{sshd.port} {other.with_suffix('.pub').read_text().strip()}\n"
    known.write_text("# keep me\n" + stale)
    write_profile(profiles_dir, "changed", _profile(sshd, config, 9, free_port()))
    done = run_cli("trust", "changed", "--yes", "--profiles", str(profiles_dir))
    assert done.returncode == 4
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr
    assert _server_fingerprint(sshd) in done.stderr
    assert known.read_text() == "# keep me\n" + stale
    up = run_cli("up", "changed", "--profiles", str(profiles_dir))
    assert up.returncode == 4 and "CHANGED" in up.stderr


@pytest.mark.usefixtures("stop_all")
def test_pinned_key_needs_no_known_hosts(sshd: Sshd, tmp_path: Path, state_dir: Path,
                                         profiles_dir: Path) -> None:
    config, known = _fresh_config(tmp_path, sshd)
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "pinned", _profile(
            sshd, config, target.port, listen, host_key=_server_fingerprint(sshd)))
        done = run_cli("up", "pinned", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
    assert not known.read_text()  # the user's known_hosts is untouched
    assert (state_dir / "known_hosts" / "pinned").read_text().startswith(
        f"[127.0.0.1]:{sshd.port} ")


def test_wrong_pin_names_both_fingerprints(sshd: Sshd, tmp_path: Path,
                                           profiles_dir: Path) -> None:
    config, _known = _fresh_config(tmp_path, sshd)
    wrong = "SHA256:" + "A" * 43
    write_profile(profiles_dir, "wrongpin", _profile(sshd, config, 9, free_port(),
                                                     host_key=wrong))
    done = run_cli("up", "wrongpin", "--profiles", str(profiles_dir))
    assert done.returncode == 4
    assert wrong in done.stderr and _server_fingerprint(sshd) in done.stderr


def _alias_config(tmp_path: Path, sshd: Sshd) -> tuple[Path, Path]:
    """A user's ssh config where ``myalias`` is the sandbox sshd under a HostKeyAlias."""
    config, known = _fresh_config(tmp_path, sshd)
    config.write_text(f"Host myalias\n    HostName 127.0.0.1\n    Port {sshd.port}\n"
                      f"    HostKeyAlias somealias\n" + config.read_text())
    return config, known


def _alias_profile(sshd: Sshd, config: Path, target: int, listen: int, **keys: object) -> dict:
    data = _profile(sshd, config, target, listen, **keys)
    data["host"] = "myalias"
    del data["port"]
    return data


@pytest.mark.usefixtures("stop_all")
def test_pinned_key_of_a_host_key_alias(sshd: Sshd, tmp_path: Path, state_dir: Path,
                                        profiles_dir: Path) -> None:
    config, known = _alias_config(tmp_path, sshd)
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "pinalias", _alias_profile(
            sshd, config, target.port, listen, host_key=_server_fingerprint(sshd)))
        done = run_cli("up", "pinalias", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
    assert not known.read_text()
    # ssh looks a HostKeyAlias up as it is, without the port
    assert (state_dir / "known_hosts" / "pinalias").read_text().startswith("somealias ")


@pytest.mark.usefixtures("stop_all")
def test_trust_then_up_of_a_host_key_alias(sshd: Sshd, tmp_path: Path,
                                           profiles_dir: Path) -> None:
    config, known = _alias_config(tmp_path, sshd)
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "alias", _alias_profile(sshd, config, target.port, listen))
        trusted = run_cli("trust", "alias", "--yes", "--profiles", str(profiles_dir))
        assert trusted.returncode == 0, trusted.stderr
        assert f"127.0.0.1 port {sshd.port} (known_hosts name somealias)" in trusted.stdout
        assert known.read_text().startswith("somealias ")
        done = run_cli("up", "alias", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")


@pytest.mark.usefixtures("stop_all")
def test_unknown_key_of_a_host_key_alias_hints_the_real_host_and_the_alias(
        sshd: Sshd, tmp_path: Path, profiles_dir: Path) -> None:
    config, _known = _alias_config(tmp_path, sshd)
    with BannerServer() as target:
        write_profile(profiles_dir, "alias", _alias_profile(sshd, config, target.port,
                                                            free_port()))
        failed = run_cli("up", "alias", "--profiles", str(profiles_dir))
    assert failed.returncode == 4, failed.stderr
    # not "ssh-keyscan -p 22 myalias": the host and port ssh connected to, the alias it looks up
    assert (f"ssh-keyscan -p {sshd.port} 127.0.0.1 | sed 's/^[^ ]*/somealias/' >> "
            "~/.ssh/known_hosts") in failed.stderr
    assert "-p 22 myalias" not in failed.stderr


def test_keyscan_hint_records_what_ssh_looks_up(sshd: Sshd, tmp_path: Path) -> None:
    config, known = _alias_config(tmp_path, sshd)
    dump = subprocess.run(["ssh", "-G", "-F", str(config), "myalias"], capture_output=True,
                          text=True, check=True).stdout
    hint = keyscan_hint(parse_dump(dump), "myalias")
    assert hint.startswith(f"ssh-keyscan -p {sshd.port} 127.0.0.1 ") and str(known) in hint
    subprocess.run(["sh", "-c", hint], capture_output=True, check=True, timeout=60)
    # ssh itself now accepts the host with strict checking: the hint wrote the right name
    login = subprocess.run(["ssh", "-F", str(config), "-l", sshd.user, "-o", "BatchMode=yes",
                            "-o", "StrictHostKeyChecking=yes", "myalias", "true"],
                           capture_output=True, text=True, check=False, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert login.returncode == 0, login.stderr


def test_keyscan_hint_without_alias_is_plain() -> None:
    settings = {"hostname": ["db.example"], "port": ["2222"],
                "userknownhostsfile": ["/k/known_hosts /k/other"]}
    assert keyscan_hint(settings, "db") == "ssh-keyscan -p 2222 db.example >> /k/known_hosts"
    aliased = keyscan_hint({**settings, "hostkeyalias": ["a/b&c"]}, "db")
    assert aliased.endswith("| sed 's/^[^ ]*/a\\/b\\&c/' >> /k/known_hosts")


@pytest.mark.usefixtures("stop_all")
def test_accept_new_of_a_host_key_alias_records_the_alias(sshd: Sshd, tmp_path: Path,
                                                          profiles_dir: Path) -> None:
    config, known = _alias_config(tmp_path, sshd)
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "newalias", _alias_profile(
            sshd, config, target.port, listen, host_key="accept-new"))
        done = run_cli("up", "newalias", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
    assert known.read_text().startswith("somealias ")
    # and trust agrees with what ssh recorded: the key is already trusted, under the alias
    again = run_cli("trust", "newalias", "--yes", "--profiles", str(profiles_dir))
    assert again.returncode == 0 and "already-trusted" in again.stdout, again.stderr


@pytest.mark.usefixtures("stop_all")
def test_trust_then_up_through_a_jump_host_with_a_host_key_alias(
        sshd: Sshd, tmp_path: Path, profiles_dir: Path) -> None:
    config, known = _fresh_config(tmp_path, sshd)
    config.write_text(f"Host jumpalias\n    HostName 127.0.0.1\n    Port {sshd.port}\n"
                      f"    User {sshd.user}\n    HostKeyAlias jumpkey\n" + config.read_text())
    listen = free_port()
    with BannerServer() as target:
        write_profile(profiles_dir, "viajump", _profile(sshd, config, target.port, listen,
                                                        jump=["jumpalias"]))
        trusted = run_cli("trust", "viajump", "--yes", "--profiles", str(profiles_dir))
        assert trusted.returncode == 0, trusted.stderr
        assert f"127.0.0.1 port {sshd.port} (known_hosts name jumpkey)" in trusted.stdout
        names = [line.split()[0] for line in known.read_text().splitlines()]
        assert names == ["jumpkey", f"[127.0.0.1]:{sshd.port}"]
        done = run_cli("up", "viajump", "--profiles", str(profiles_dir))
        assert done.returncode == 0, done.stderr
        assert read_banner_through("127.0.0.1", listen)[0].startswith(b"220")
