"""[hooks]: validated like every profile value, ignored by the compilers, run by the engine
on a state change without ever affecting the tunnel."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from sshwrap.core.compile.config import compile_config
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.compile.systemd import compile_systemd
from sshwrap.core.model import HOOK_STATES, Profile
from sshwrap.core.parse import parse_profile
from sshwrap.core.unparse import profile_to_mapping
from sshwrap.errors import InvalidInput
from sshwrap.runtime.supervise import hooks
from sshwrap.runtime.supervise.events import Event
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases.up import Action, up
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    eventually,
    process_gone,
    read_banner_through,
    record_of,
)

BASE: dict[str, Any] = {"host": "db.example.com",
                        "forward": [{"type": "local", "listen": 5432, "to": "localhost:5432"}]}


def _problems(hooks_table: object) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_profile("p", {**BASE, "hooks": hooks_table}, "p.toml")
    return [f"{p.key}: {p.message}" for p in caught.value.problems]


@pytest.mark.parametrize(("table", "key", "words"), [
    ({"on_up": "notify-send up"}, "hooks.on_up", "never a shell command line"),
    ({"on_up": []}, "hooks.on_up", "non-empty list"),
    ({"on_up": ["notify-send", 3]}, "hooks.on_up", "list of strings"),
    ({"on_up": ["bin/notify"]}, "hooks.on_up[0]", "absolute path or a program name"),
    ({"on_up": ["./notify"]}, "hooks.on_up[0]", "absolute path or a program name"),
    ({"on_down": ["/bin/echo", "a\x00b"]}, "hooks.on_down[1]", "NUL"),
    ({"on_failed": ["/bin/echo", "a\nb"]}, "hooks.on_failed[1]", "newlines"),
    ({"on_up\u202e": ["/bin/true"]}, "hooks.on_up\u202e", "unknown key"),
    ({"on_fail": ["/bin/true"]}, "hooks.on_fail", "did you mean 'on_failed'"),
    ({"timeout": 0}, "hooks.timeout", "1-3600"),
    ({"timeout": True}, "hooks.timeout", "1-3600"),
    ("notify-send", "hooks", "must be a table"),
])
def test_bad_hooks_are_refused_naming_the_key(table: object, key: str, words: str) -> None:
    problems = _problems(table)
    assert len(problems) == 1 and problems[0].startswith(f"{key}: ")
    assert words in problems[0]


def test_hooks_round_trip_and_change_no_compiled_client() -> None:
    table = {"on_up": ["notify-send", "sshwrap", "up"], "on_failed": ["/usr/bin/logger", "x"],
             "timeout": 3}
    plain = parse_profile("p", BASE, "p.toml")
    hooked = parse_profile("p", {**BASE, "hooks": table}, "p.toml")

    assert hooked.hooks.for_state("up") == ("notify-send", "sshwrap", "up")
    assert hooked.hooks.for_state("down") == () and hooked.hooks.timeout == 3
    assert profile_to_mapping(hooked)["hooks"] == table
    assert parse_profile("p", profile_to_mapping(hooked), "p.toml") == hooked
    assert "hooks" not in profile_to_mapping(plain)
    for compiler in (compile_ssh, compile_plink, compile_config, compile_systemd):
        assert compiler(hooked) == compiler(plain)  # type: ignore[operator]
    assert {f"on_{s}" for s in HOOK_STATES} == {"on_up", "on_down", "on_failed",
                                                "on_reconnecting"}


def _event(to_state: str) -> Event:
    return Event(time=0.0, name="p", from_state="up", to_state=to_state, reason="why",
                 pid=1, restarts=0)


def test_a_hook_that_hangs_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    pids, log = tmp_path / "pids", tmp_path / "p.log"
    # The hook and a child of its own both hang; the timeout ends the two.
    script = f"sleep 600 & echo $$ $! > {pids}; echo started; wait"
    code = hooks.run(["/bin/sh", "-c", script], {"PATH": os.defpath}, log, "on_up", 1.0)

    assert code is None
    for pid in pids.read_text().split():  # killed: gone once the kernel has reaped it
        eventually(lambda pid=pid: process_gone(int(pid)), f"pid {pid} gone")
    text = log.read_text()
    assert "on_up: | started" in text and "on_up: killed after 1 s" in text


def test_an_exiting_engine_ends_the_hooks_still_running(tmp_path: Path) -> None:
    pids, log = tmp_path / "pids", tmp_path / "p.log"
    profile = parse_profile("p", {**BASE, "hooks": {"timeout": 3600, "on_down": [
        "/bin/sh", "-c", f"sleep 600 & echo $$ $! > {pids}; wait"]}}, "p.toml")
    engine_hooks = hooks.Hooks()
    thread = engine_hooks.run_for(profile, _event("down"), {"PATH": os.defpath}, log)
    assert thread is not None
    eventually(lambda: pids.exists() and len(pids.read_text().split()) == 2, "hook started")

    engine_hooks.drain(0.2)  # its hour-long timeout is not waited for

    thread.join()
    for pid in pids.read_text().split():  # killed: gone once the kernel has reaped it
        eventually(lambda pid=pid: process_gone(int(pid)), f"pid {pid} gone")
    assert "on_down: ended with its tunnel or the engine" in log.read_text()


def test_a_hook_gets_the_change_but_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "p.log"
    profile = parse_profile("p", {**BASE, "auth": "password", "password_env": "DB_PASS",
                                  "hooks": {"on_failed": ["env"]}}, "p.toml")
    runner = hooks.Hooks()
    env = runner.hook_env(profile, _event("failed"), {"PATH": os.defpath, "DB_PASS": "s3cret",
                                                    "SSH_ASKPASS": "/x"})
    thread = runner.run_for(profile, _event("failed"), env, log)
    assert thread is not None
    thread.join()

    text = log.read_text()
    assert "SSHWRAP_TUNNEL=p" in text and "SSHWRAP_STATE=failed" in text
    assert "SSHWRAP_REASON=why" in text and "exited with status 0" in text
    assert "s3cret" not in text and "SSH_ASKPASS" not in text
    assert runner.run_for(profile, _event("up"), env, log) is None  # no on_up: nothing run


def test_a_missing_program_is_logged_and_nothing_else(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    assert hooks.run(["no-such-hook-program"], {"PATH": str(tmp_path)}, log, "on_up",
                     1.0) is None
    assert "on_up: no-such-hook-program not found on PATH; not run" in log.read_text()


def test_hooks_run_on_the_tunnels_changes_and_never_affect_it(
    store: ProfileStore, runtime_paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, tmp_path: Path,
) -> None:
    port = free_port()
    hung, failed = tmp_path / "hung.pid", tmp_path / "failed.txt"
    write_profile("hooked", [{"type": "local", "listen": f"127.0.0.1:{port}",
                              "to": f"127.0.0.1:{banner_server.port}"}], restart="no", hooks={
        "on_up": ["/bin/sh", "-c", f"echo $$ > {hung}; exec sleep 600"],
        "on_failed": ["/bin/sh", "-c",
                      f'echo "$SSHWRAP_TUNNEL $SSHWRAP_STATE $SSHWRAP_REASON" > {failed}'],
        "timeout": 1})

    assert up(store, ["hooked"], paths=runtime_paths).outcomes[0].action is Action.STARTED
    record = record_of(runtime_paths, "hooked")
    eventually(lambda: hung.exists() and hung.read_text().strip(), "the on_up hook ran")
    hook_pid = int(hung.read_text())
    eventually(lambda: process_gone(hook_pid), "the hung hook killed at its timeout")
    log = runtime_paths.log("hooked")
    eventually(lambda: "on_up: killed after 1 s" in log.read_text(), "the kill logged")

    assert record_of(runtime_paths, "hooked") == record  # the tunnel never noticed
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)

    os.kill(record.pid, signal.SIGKILL)  # restart = "no": it fails for good
    eventually(lambda: failed.exists() and failed.read_text(), "the on_failed hook ran")
    assert failed.read_text().startswith("hooked failed ")
    assert "SIGKILL" in failed.read_text()


def _counting_toml_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import tomllib

    read: list[str] = []
    loads = tomllib.loads

    def counted(text: str, **kwargs: Any) -> dict[str, Any]:
        read.append(text)
        return loads(text, **kwargs)

    monkeypatch.setattr(tomllib, "loads", counted)
    return read


def _password_profiles(tmp_path: Path, count: int) -> tuple[Path, Profile]:
    """A folder of ``count`` profiles p0, p1, ..., each with its password variable PW0,
    PW1, ...; and p0 parsed."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    for i in range(count):
        (folder / f"p{i}.toml").write_text(f'host = "h"\npassword_env = "PW{i}"\n')
    return folder, parse_profile("p0", BASE, str(folder / "p0.toml"))


def test_a_change_with_no_hook_reads_no_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A tunnel going up or down with no hook of its own must not read every profile of its
    # folder for their password variables (a down of twenty read 420 files that way).
    folder, profile = _password_profiles(tmp_path, 5)
    runner = hooks.Hooks()
    read = _counting_toml_reads(monkeypatch)

    for state in ("up", "down", "failed"):
        assert runner.run_for(profile, _event(state), {}, tmp_path / "p.log", [folder]) is None
    assert read == []
    # ...yet a hook run later is still kept from every one of them.
    env = runner.hook_env(profile, _event("up"), {f"PW{i}": "x" for i in range(5)})
    assert not any(name.startswith("PW") for name in env)


def test_a_hook_reads_only_the_profiles_changed_since_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, profile = _password_profiles(tmp_path, 3)
    runner = hooks.Hooks()
    base = {"PW0": "a", "PW1": "b", "PW2": "c", "NEW_SECRET": "d", "KEEP": "e"}
    assert set(runner.hook_env(profile, _event("up"), base, [folder])) >= {"KEEP", "NEW_SECRET"}
    read = _counting_toml_reads(monkeypatch)

    assert "PW1" not in runner.hook_env(profile, _event("up"), base, [folder])
    assert read == []  # nothing changed: nothing read again
    (folder / "p1.toml").write_text('host = "h"\npassword_env = "NEW_SECRET"\n')
    env = runner.hook_env(profile, _event("up"), base, [folder])
    assert len(read) == 1 and "NEW_SECRET" not in env and "KEEP" in env
