"""The express lane: once a resident supervisor runs, a plain ``sshwrap up``, ``down``,
``status`` or ``restart`` is served by it, with the full command line's output, exit codes
and care for bad input."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import psutil
import pytest

from sshwrap.cli.express import LEFT, OPTIONS, parse_request, parse_up
from sshwrap.errors import ExitCode
from sshwrap.runtime.engine import client, daemon
from sshwrap.runtime.system import state
from sshwrap.runtime.system.detach import ENGINE_ENVIRONMENT
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.rendezvous import DEFAULT_WAIT
from sshwrap.sandbox import BannerServer, Sshd, free_port
from sshwrap.store import ProfileStores
from sshwrap.usecases import served
from tests.runtime.tunnel_helpers import (
    BANNER,
    ECHO,
    ProfileWriter,
    eventually,
    process_gone,
    read_banner_through,
    record_of,
    stop_all_and_check_gone,
)


class Ran:
    """One run of the command line: its result, and whether the full command line ran."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        lines = done.stderr.splitlines(keepends=True)
        imports = [ln for ln in lines if ln.startswith("import time:")]
        self.code = done.returncode
        self.stdout = done.stdout
        self.stderr = "".join(ln for ln in lines if not ln.startswith("import time:"))
        self.modules = {ln.split("|")[-1].strip() for ln in imports}
        self.full_command_line = "typer" in self.modules

    @property
    def express(self) -> bool:
        return not self.full_command_line

    @property
    def light(self) -> bool:
        """True when it printed its report without loading the results' classes or what they
        bring (the one renderer reads the engine's answer as it came): the lane's speed."""
        return not self.modules & {"dataclasses", "sshwrap.errors", "sshwrap.store",
                                   "sshwrap.runtime.observe.results"}


def sshwrap(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    """Run sshwrap, telling from its imports which lane ran it."""
    return Ran(subprocess.run([sys.executable, "-X", "importtime", "-m", "sshwrap", *args],
                              capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
                              check=False))


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatePaths]:
    """A state dir with a short path (the lane needs its socket in <state>/ctl; pytest's
    temporary paths are too long for that), emptied and its supervisor ended at the end."""
    root = Path(tempfile.mkdtemp(prefix="swx", dir="/tmp"))
    monkeypatch.setenv("SSHWRAP_STATE_DIR", str(root))
    state_paths = StatePaths(root)
    try:
        yield state_paths
        stop_all_and_check_gone(state_paths)
    finally:
        daemon.shutdown(state_paths)
        shutil.rmtree(root)


def _local(write_profile: ProfileWriter, name: str, banner_server: BannerServer,
           **keys: object) -> int:
    port = free_port()
    write_profile(name, [{"type": "local", "listen": f"127.0.0.1:{port}",
                          "to": f"127.0.0.1:{banner_server.port}"}], **keys)
    return port


def _resident_running(paths: StatePaths, write_profile: ProfileWriter,
                      banner_server: BannerServer) -> int:
    """Start a first tunnel: with no engine yet, the lane starts one and hands it the up."""
    _local(write_profile, "first", banner_server)
    first = sshwrap("up", "first")
    assert first.code == 0, first.stderr
    assert first.express  # the full command line was never loaded
    return int(daemon.request(paths, {"op": "ping"}, timeout=5)["pid"])


# -- what the lane takes (pure) --------------------------------------------------------------


def test_the_lane_takes_plain_up_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSHWRAP_EXPRESS", raising=False)
    monkeypatch.delenv("SSHWRAP_DEBUG", raising=False)
    request = parse_up(["up", "db", "web", "--wait", "3", "--tag=work", "--json",
                        "--profiles", "rel", "--all", "--tag", "home"])
    assert request is not None
    assert request["names"] == ["db", "web"]
    assert (request["wait"], request["tag"], request["json"], request["all"]) == (
        3.0, "home", True, True)  # the last of a repeated option wins, as in the full CLI
    assert request["profiles"] == [os.path.abspath("rel")]
    assert parse_up(["up"]) == {"op": "up", "names": [], "all": False, "tag": None,
                                "wait": DEFAULT_WAIT, "json": False, "profiles": [],
                                "share": False}
    shared = parse_up(["up", "db", "--share"])
    assert shared is not None and shared["share"] is True


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_the_lane_reads_every_option_as_the_full_command_line_declares_it(command: str) -> None:
    """Each option of the lane's commands, taken from the Typer app (its name, whether it
    takes a value, its default), is the lane's too, or one the lane leaves to the full
    command line: the two parsers cannot drift apart."""
    import typer.main

    from sshwrap.cli.app import _register_commands, app

    _register_commands([command])
    declared = {param.opts[0]: (not param.is_flag, param.default)
                for param in typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
                if param.param_type_name == "option" and param.opts[0] != "--help"}
    lane = OPTIONS[command]
    assert set(lane) == set(declared)
    assert {o: s for o, s in lane.items() if s != LEFT} == {
        o: declared[o] for o, s in lane.items() if s != LEFT}


@pytest.mark.parametrize("args", [
    [], ["status"], ["down", "db"], ["--debug", "up", "db"], ["up", "db", "--share=yes"],
    ["up", "db", "--ask-password"], ["up", "--help"], ["up", "./db.toml"], ["up", "db.toml"],
    ["up", "db", "--wait"], ["up", "db", "--wait", "soon"], ["up", "db", "--wait", "nan"],
    ["up", "db", "--wait=inf"], ["up", "--tag", "--json"], ["up", "--", "db"],
])
def test_anything_else_goes_to_the_full_command_line(args: list[str]) -> None:
    assert parse_up(args) is None


def test_the_lane_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSHWRAP_EXPRESS", "0")
    assert parse_up(["up", "db"]) is None
    assert parse_request(["status"]) is None


def test_the_lane_takes_plain_down_status_and_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSHWRAP_EXPRESS", raising=False)
    monkeypatch.delenv("SSHWRAP_DEBUG", raising=False)
    down = parse_request(["down", "db", "--json", "--all"])
    status = parse_request(["status", "--json"])
    restart = parse_request(["restart", "db", "--wait=4", "--tag", "work"])
    assert down is not None and status is not None and restart is not None
    assert (down["op"], down["names"], down["json"], down["all"]) == ("down", ["db"], True, True)
    assert (status["op"], status["names"], status["json"]) == ("status", [], True)
    assert (restart["op"], restart["names"], restart["wait"], restart["tag"]) == (
        "restart", ["db"], 4.0, "work")


@pytest.mark.parametrize("args", [
    ["status", "--watch"], ["status", "--interval", "2"], ["status", "--all"],
    ["status", "--tag", "x"], ["down", "--tag", "x"], ["down", "--wait", "3"],
    ["down", "db", "--help"], ["restart", "./db.toml"], ["restart", "db", "--share"],
    ["restart", "db", "--wait", "soon"], ["reload"], ["logs", "db"],
])
def test_other_forms_of_down_status_and_restart_go_to_the_full_command_line(
        args: list[str]) -> None:
    assert parse_request(args) is None


# -- one request, one renderer (in-process, no engine) ---------------------------------------


def _answer_of(op: str) -> dict[str, object]:
    """The engine's final answer to ``op``: a report with a failure, both streams have words."""
    from sshwrap.errors import ConnectionFailed
    from sshwrap.runtime.observe.results import (
        Action,
        ForwardStatus,
        StatusReport,
        TunnelOutcome,
        TunnelsReport,
        TunnelState,
        TunnelStatus,
    )

    forward = ForwardStatus("local", "127.0.0.1:7000", "db:5432", True, "listening", 2)
    if op == "status":
        row = TunnelStatus("db", TunnelState.UP, 123, 75.0, 1, True, (forward,), rtt_ms=3.25)
        failed = TunnelStatus("web", TunnelState.FAILED, None, None, 0, False, (),
                              detail="web: refused \x1b[2J", failure_code=6, failed_at=1e9)
        return {"report": StatusReport((row, failed), ExitCode.CONNECTION).to_wire()}
    outcomes = (TunnelOutcome("db", Action.STARTED, 123, (forward,), message="a note"),
                TunnelOutcome("web", Action.FAILED, error=ConnectionFailed(
                    "web: refused", hint="see 'sshwrap logs web'")))
    return {"report": TunnelsReport(op, outcomes).to_wire()}


@pytest.mark.parametrize("args", [
    ["up", "db", "web", "--wait", "3", "--tag", "t", "--share", "--json"],
    ["up", "--all", "--profiles", "rel"], ["up", "db"],
    ["restart", "db", "--wait=4"], ["restart", "--tag", "t", "--json"],
    ["down", "db", "web"], ["down", "--all", "--json"],
    ["status"], ["status", "db", "--json", "--profiles", "rel"],
])
def test_the_lane_and_the_command_line_send_one_request_and_print_its_answer_alike(
        args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """Both front ends send the engine the one request of the command (built by the one
    client, runtime/engine/client.py) and print its answer with the one renderer
    (cli/render/runtime.py): the same words on each stream, the same exit code."""
    from sshwrap.cli import express
    from sshwrap.cli.app import main

    monkeypatch.delenv("SSHWRAP_EXPRESS", raising=False)
    monkeypatch.delenv("SSHWRAP_DEBUG", raising=False)
    monkeypatch.setenv("SSHWRAP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    answer = _answer_of(args[0])
    sent: list[dict[str, object]] = []

    def asked(_paths: StatePaths, message: dict[str, object], **_: object) -> object:
        sent.append(message)
        return answer

    monkeypatch.setattr(served, "ask", asked)
    with pytest.raises(SystemExit) as full_exit:
        main(list(args))
    full = capsys.readouterr()
    monkeypatch.setattr(client, "send", lambda _conn, message: sent.append(message))
    monkeypatch.setattr(client, "answer", lambda _conn, **_: answer)
    request = parse_request(args)
    assert request is not None
    lane_code = express._asked(None, request)  # type: ignore[arg-type]
    lane = capsys.readouterr()

    from_full, from_lane = sent
    assert {**from_full, "profiles": None} == {**from_lane, "profiles": None}
    if "profiles" in from_lane:  # the same folders, found from the asker's directory
        stores = ProfileStores()
        assert served.store_of(from_full, stores)[0].dirs == \
            served.store_of(from_lane, stores)[0].dirs
    assert (lane.out, lane.err, lane_code) == (full.out, full.err, full_exit.value.code)
    assert lane_code == 6
    if args[0] != "status":  # a tunnel's failure goes to stderr, with --json too
        assert "sshwrap: error: web: refused\nhint: see 'sshwrap logs web'\n" in lane.err
    assert "\x1b" not in lane.out + lane.err  # the one renderer escapes what it quotes


# -- against the real sshd -------------------------------------------------------------------


@pytest.mark.sshd
def test_up_is_served_by_the_resident_once_it_runs(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    resident = _resident_running(paths, write_profile, banner_server)
    port = _local(write_profile, "second", banner_server)

    started = sshwrap("up", "second")

    assert started.code == 0, started.stderr
    assert started.express and started.light
    record = record_of(paths, "second")
    assert started.stdout == (f"second: started (pid {record.pid})\n"
                              f"  local 127.0.0.1:{port} -> 127.0.0.1:{banner_server.port}\n")
    assert record.supervisor_pid == resident and record.verified
    assert psutil.Process(record.pid).ppid() == resident
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)

    again = sshwrap("up", "second", "first")
    assert again.code == 0 and again.express
    assert "second: already-up" in again.stdout and "first: already-up" in again.stdout


@pytest.mark.sshd
@pytest.mark.parametrize("args", [
    ["up", "nosuch"], ["restart", "--tag", "none"], ["up", "fine", "--wait", "0"],
    ["up", "needs-password"],
])
def test_with_no_engine_bad_input_starts_none_and_writes_nothing(
    args: list[str], paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer,
) -> None:
    # The lane starts an engine for up and restart only once their profiles are known to be
    # valid (and need no secret from a terminal or keyring): the engine would make its state
    # directory, and bad input must change nothing. The full command line reports it.
    _local(write_profile, "fine", banner_server)
    unset = "SSHWRAP_TEST_UNSET_PASSWORD"  # the name of a variable, not a password
    _local(write_profile, "needs-password", banner_server, auth="password", password_env=unset)
    env = {k: v for k, v in os.environ.items() if k != unset}
    express = sshwrap(*args, env=env)
    full = sshwrap(*args, env={**env, "SSHWRAP_EXPRESS": "0"})

    assert express.full_command_line and full.full_command_line
    assert express.code == full.code == 2
    assert (express.stdout, express.stderr) == (full.stdout, full.stderr)
    assert list(paths.root.iterdir()) == []
    assert state.file_lock_is_free(daemon.lock_path(paths))
    # The engine the lane started while it checked (held: runtime/system/detach.py) is gone too.
    assert _engines_of(paths) == []


def _engines_of(paths: StatePaths) -> list[int]:
    """The pids of every engine process of the state dir ``paths``, held ones included."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "--engine" in (proc.info["cmdline"] or []) \
                    and proc.environ().get("SSHWRAP_STATE_DIR") == str(paths.root):
                found.append(proc.pid)
    return found


def test_a_held_engine_writes_nothing_and_goes_without_its_go(tmp_path: Path) -> None:
    # Started by the lane before it has checked its input: the engine imports itself, then
    # waits. When the lane ends without releasing it (bad input, Ctrl-C, a crash), it goes,
    # with nothing written; released, it serves.
    from sshwrap.runtime.system.detach import HeldEngine

    root = tmp_path / "state"
    env = {**os.environ, "SSHWRAP_STATE_DIR": str(root)}
    held = HeldEngine(str(root), env)
    assert held.process.stdin is not None
    held.process.stdin.close()  # the lane went away
    assert held.process.wait(timeout=30) == 0
    assert not root.exists()

    held = HeldEngine(str(root), env)
    held.release()
    paths = StatePaths(root)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert daemon.request(paths, {"op": "ping"}, timeout=5)["pid"] == held.process.pid
                break
            except daemon.Unreachable:
                assert time.monotonic() < deadline and held.process.poll() is None
                time.sleep(0.02)
        assert (root / "supervisor.log").read_text().count("serving") == 1  # its own log
    finally:
        daemon.shutdown(paths)
    assert held.process.wait(timeout=30) == 0


def test_up_share_is_taken_by_the_lane_as_by_the_full_command_line(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    # Neither profile asks for sharing: --share does, in either lane, on one master.
    ports = {name: _local(write_profile, name, banner_server) for name in ("one", "two")}
    express = sshwrap("up", "one", "--share")
    full = sshwrap("up", "two", "--share", env={**os.environ, "SSHWRAP_EXPRESS": "0"})

    assert express.express and full.full_command_line
    assert express.code == full.code == 0, (express.stderr, full.stderr)
    one, two = record_of(paths, "one"), record_of(paths, "two")
    assert one.shared is not None and one.shared == two.shared and one.pid == two.pid
    for port in ports.values():
        assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)


def test_a_first_start_that_fails_leaves_no_engine_but_keeps_the_failure(
    paths: StatePaths, write_profile: ProfileWriter,
) -> None:
    write_profile("refused", [{"type": "local", "listen": f"127.0.0.1:{free_port()}",
                               "to": "127.0.0.1:1"}], port=free_port())
    ran = sshwrap("up", "refused")
    assert ran.express and ran.code == 6, ran.stderr
    assert state.file_lock_is_free(daemon.lock_path(paths))  # the engine it started is gone
    record = record_of(paths, "refused")
    assert record.kept_failure and record.failure_code == 6


def test_status_and_down_with_no_engine_start_none(paths: StatePaths) -> None:
    for args in (["status"], ["down", "--all"]):
        ran = sshwrap(*args)
        assert ran.full_command_line and ran.code == 0, ran.stderr
        assert state.file_lock_is_free(daemon.lock_path(paths))


def _one_path(paths: StatePaths, args: list[str]) -> dict[str, object]:
    """The engine's answer to the command line ``args``, asked in-process the way every front
    end asks it (the one request, through the one client): errors raised as themselves."""
    request = parse_request(args)
    assert request is not None
    options = {k: v for k, v in request.items() if k not in ("op", "names", "json", "profiles")}
    answer = served.ask(paths, client.command(request["op"], request["names"],
                                              profiles=request["profiles"], **options))
    assert answer is not None
    return answer


def _told(paths: StatePaths, args: list[str]) -> tuple[str, int]:
    """The words and exit code of the error the engine answers ``args`` with, as
    cli/outcome.py, the one place errors become words, says them."""
    from sshwrap.cli.outcome import failure
    from sshwrap.errors import SshwrapError

    with pytest.raises(SshwrapError) as caught:
        _one_path(paths, args)
    return failure(caught.value)


@pytest.mark.parametrize("args", [
    ["up", "nosuch"], ["up", "broken"], ["up", "fine", "broken"], ["up", "--tag", "none"],
    ["up", "fine", "--wait", "0"], ["up"], ["up", "--all"], ["up", "fine", "bad name"],
    ["up", "needs-password"],
])
def test_bad_input_to_up_is_the_engines_to_judge_and_starts_nothing(
    args: list[str], paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, profiles_dir: Path,
) -> None:
    # With an engine running, bad input is sent like any request (no pass of checks in front
    # of it): the engine answers the error as data, told in the command line's words.
    _resident_running(paths, write_profile, banner_server)
    _local(write_profile, "fine", banner_server)
    unset = "SSHWRAP_TEST_UNSET_PASSWORD"  # the name of a variable, not a password
    _local(write_profile, "needs-password", banner_server, auth="password", password_env=unset)
    (profiles_dir / "broken.toml").write_text('host = "h"\nport = "many"\n')
    assert unset not in os.environ

    ran = sshwrap(*args)

    assert ran.express
    assert (ran.stdout, ran.stderr, ran.code) == ("", *_told(paths, args))
    assert ran.code == 2 and ran.stderr.startswith("sshwrap: error: ")
    assert state.recorded_names(paths) == ["first"]


@pytest.mark.sshd
def test_tunnels_run_once_are_served_by_the_engine_too(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    _resident_running(paths, write_profile, banner_server)
    port = _local(write_profile, "once", banner_server, restart="no")

    started = sshwrap("up", "once")

    assert started.code == 0, started.stderr
    assert started.express
    record = record_of(paths, "once")
    assert record.mode == "engine" and record.supervisor_pid == record_of(paths, "first") \
        .supervisor_pid
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)


@pytest.mark.sshd
def test_profiles_are_found_from_the_callers_directory_and_environment(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    profiles_dir: Path, tmp_path: Path,
) -> None:
    _resident_running(paths, write_profile, banner_server)
    workdir = tmp_path / "work"
    (workdir / "profiles").mkdir(parents=True)
    (workdir / "mine").mkdir()
    port = _local(write_profile, "here", banner_server)
    shutil.move(profiles_dir / "here.toml", workdir / "profiles" / "here.toml")
    other = _local(write_profile, "there", banner_server)
    shutil.move(profiles_dir / "there.toml", workdir / "mine" / "there.toml")
    env = {k: v for k, v in os.environ.items() if k != "SSHWRAP_PROFILES"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "empty-config")

    by_default = sshwrap("up", "here", env=env, cwd=workdir)  # ./profiles of the caller
    by_option = sshwrap("up", "there", "--profiles", "mine", env=env, cwd=workdir)

    for ran in (by_default, by_option):
        assert ran.code == 0, ran.stderr
        assert ran.express
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)
    assert read_banner_through("127.0.0.1", other) == (BANNER, ECHO)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word: ssh waits for its banner."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.mark.sshd
def test_ctrl_c_stops_what_the_up_started_and_the_resident_serves_on(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    silent_server: int, sshd: Sshd,
) -> None:
    resident = _resident_running(paths, write_profile, banner_server)
    _local(write_profile, "slow", banner_server, port=silent_server, ssh_config_file=None,
           host_key="accept-new")
    asked = subprocess.Popen([sys.executable, "-m", "sshwrap", "up", "slow", "--wait", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: state.read_record(paths, "slow"), "the slow tunnel's record")
        client = record_of(paths, "slow").pid

        asked.send_signal(signal.SIGINT)
        out, err = asked.communicate(timeout=60)
    finally:
        if asked.poll() is None:
            asked.kill()
            asked.wait()

    assert asked.returncode == 130
    assert "sshwrap: interrupted" in err and out == ""
    assert process_gone(client)
    assert state.read_record(paths, "slow") is None
    assert psutil.Process(resident).is_running()
    port = _local(write_profile, "after", banner_server)
    after = sshwrap("up", "after")
    assert after.code == 0 and after.express, after.stderr
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)


@pytest.mark.sshd
def test_progress_shows_on_a_terminal(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    _resident_running(paths, write_profile, banner_server)
    _local(write_profile, "shown", banner_server)

    child = pexpect.spawn(sys.executable, ["-m", "sshwrap", "up", "shown"], timeout=60,
                          encoding="utf-8", env=dict(os.environ, SSHWRAP_EXPRESS="1"))
    child.expect(r"verifying \(0/1 ready\): shown 0/1")
    child.expect(r"shown: started \(pid \d+\)")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0


# -- down, status and restart ----------------------------------------------------------------


def _without_uptime(text: str) -> str:
    """A status table or JSON with its uptimes blanked (they tick between two runs), and the
    table's padding with them."""
    text = re.sub(r'"uptime": [0-9.e+-]+', '"uptime": 0', text)
    text = re.sub(r"^(\S+\s+up\S*\s+\d+\s+)\S+", r"\1-", text, flags=re.MULTILINE)
    return re.sub(r" +", " ", text)


@pytest.mark.sshd
def test_down_status_and_restart_are_served_by_the_engine(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    resident = _resident_running(paths, write_profile, banner_server)
    port = _local(write_profile, "second", banner_server)
    assert sshwrap("up", "second").express
    before = record_of(paths, "second")

    shown = sshwrap("status")
    shown_json = sshwrap("status", "--json")
    restarted = sshwrap("restart", "second")
    after = record_of(paths, "second")
    stopped = sshwrap("down", "second")

    assert shown.express and shown.code == 0, shown.stderr
    assert all(ran.light for ran in (shown, shown_json, restarted, stopped))
    assert re.search(rf"^second\s+up\s+{before.pid}\s", shown.stdout, re.MULTILINE)
    assert shown_json.express and shown_json.code == 0
    assert {row["name"]: row["state"] for row in json.loads(shown_json.stdout)} == {
        "first": "up", "second": "up"}
    assert restarted.express and restarted.code == 0, restarted.stderr
    assert restarted.stdout == (f"second: started (pid {after.pid})\n"
                                f"  local 127.0.0.1:{port} -> 127.0.0.1:{banner_server.port}\n")
    assert after.pid != before.pid and process_gone(before.pid)
    assert after.supervisor_pid == resident
    assert stopped.express and stopped.code == 0
    assert stopped.stdout == f"second: stopped (pid {after.pid})\n"
    assert process_gone(after.pid) and state.read_record(paths, "second") is None
    assert psutil.Process(resident).is_running()


@pytest.mark.sshd
def test_the_full_command_line_asks_the_engine_too(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    """With the lane off, down, status and restart still run in the engine, as data."""
    resident = _resident_running(paths, write_profile, banner_server)
    before = record_of(paths, "first")
    full = {**os.environ, "SSHWRAP_EXPRESS": "0"}

    restarted = sshwrap("restart", "first", env=full)
    after = record_of(paths, "first")
    shown = sshwrap("status", "first", "--json", env=full)
    stopped = sshwrap("down", "first", env=full)

    assert restarted.full_command_line and restarted.code == 0, restarted.stderr
    assert restarted.stdout.startswith(f"first: started (pid {after.pid})\n")
    assert after.pid != before.pid and after.supervisor_pid == resident
    assert process_gone(before.pid)
    assert shown.code == 0 and json.loads(shown.stdout)[0]["pid"] == after.pid
    assert stopped.code == 0 and stopped.stdout == f"first: stopped (pid {after.pid})\n"
    assert process_gone(after.pid) and state.recorded_names(paths) == []
    assert psutil.Process(resident).is_running()


@pytest.mark.sshd
def test_status_prints_the_engines_live_view_which_reads_as_the_records(
    paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
    profiles_dir: Path,
) -> None:
    from sshwrap.cli.render.runtime import report_streams

    _resident_running(paths, write_profile, banner_server)
    _local(write_profile, "idle", banner_server)
    (profiles_dir / "broken.toml").write_text('host = "h"\nport = "many"\n')
    (paths.tunnels / "damaged.json").write_text("{not json")

    for args in (["status"], ["status", "--json"], ["status", "idle"], ["status", "first"]):
        ran = sshwrap(*args)
        wire = _one_path(paths, args)["report"]
        assert isinstance(wire, dict)
        out, err = report_streams(wire, as_json="--json" in args)
        assert ran.express and ran.code == wire["exit_code"], (args, ran.stderr)
        assert (_without_uptime(ran.stdout), ran.stderr) == (_without_uptime(out), err), args

    from sshwrap.store import ProfileStore
    from sshwrap.usecases.status import status

    store = ProfileStore((profiles_dir,))
    from_engine = served.status_report(store, paths=paths)
    from_records = status(store, paths=paths)
    assert _without_uptime(json.dumps(from_engine.to_json())) == \
        _without_uptime(json.dumps(from_records.to_json()))
    assert from_engine.exit_code == from_records.exit_code == 8  # the damaged record
    cleaned = sshwrap("down", "damaged")  # the engine's down reads the records too
    assert cleaned.express and cleaned.code == 0, cleaned.stderr
    assert cleaned.stdout.startswith("damaged: cleaned\n")
    assert state.recorded_names(paths) == ["first"]


@pytest.mark.sshd
@pytest.mark.parametrize("args", [
    ["down"], ["down", "--json"], ["down", "bad name"], ["down", "first", "bad name"],
    ["status", "bad name"], ["status", "nosuch"], ["status", "first", "nosuch"],
    ["restart"], ["restart", "nosuch"], ["restart", "broken"], ["restart", "first", "broken"],
    ["restart", "--tag", "none"], ["restart", "first", "--wait", "0"], ["restart", "bad name"],
    ["restart", "--all"],
])
def test_bad_input_to_down_status_and_restart_is_the_engines_to_judge(
    args: list[str], paths: StatePaths, write_profile: ProfileWriter,
    banner_server: BannerServer, profiles_dir: Path,
) -> None:
    _resident_running(paths, write_profile, banner_server)
    first = record_of(paths, "first")
    (profiles_dir / "broken.toml").write_text('host = "h"\nport = "many"\n')

    ran = sshwrap(*args)

    assert ran.express
    assert (ran.stdout, ran.stderr, ran.code) == ("", *_told(paths, args))
    assert ran.code == 2 and ran.stderr.startswith("sshwrap: error: ")
    assert state.recorded_names(paths) == ["first"]
    assert record_of(paths, "first").pid == first.pid


@pytest.mark.sshd
@pytest.mark.parametrize("lane", ["express", "full"])
def test_down_all_ends_the_engine_before_it_returns(
    lane: str, paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    resident = _resident_running(paths, write_profile, banner_server)
    client = record_of(paths, "first").pid
    env = {**os.environ, "SSHWRAP_EXPRESS": "1" if lane == "express" else "0"}

    stopped = sshwrap("down", "--all", env=env)

    assert stopped.code == 0, stopped.stderr
    assert stopped.express == (lane == "express")
    assert stopped.stdout == f"first: stopped (pid {client})\n"
    assert state.file_lock_is_free(daemon.lock_path(paths))  # a new engine may start now
    assert process_gone(client)
    assert state.recorded_names(paths) == []
    # The engine lets go of its lock before its tunnels' on_down hooks drain (a few seconds
    # at most), so the down returns first; the process itself ends right after.
    eventually(lambda: process_gone(resident), "the engine exited")
    again = sshwrap("down", "--all", env=env)  # nothing serves: the records are read
    assert again.full_command_line and (again.code, again.stdout) == (0, "no tunnel to act on\n")


@pytest.mark.parametrize("lane", ["express", "full"])
def test_the_engine_keeps_nothing_of_the_starting_environment_but_its_own(
    lane: str, paths: StatePaths, write_profile: ProfileWriter, banner_server: BannerServer,
) -> None:
    # The engine outlives the up that starts it, its first environment readable in /proc
    # all along: a password variable of any profile (password_env may name any variable)
    # must not be kept there, whichever lane started it.
    port = _local(write_profile, "first", banner_server)
    secret = "sw-not-for-the-engine-" + os.urandom(6).hex()
    env = {**os.environ, "SOME_TUNNEL_PASSWORD": secret,
           "SSHWRAP_EXPRESS": "1" if lane == "express" else "0"}

    ran = sshwrap("up", "first", env=env)

    assert ran.code == 0, ran.stderr
    assert ran.express == (lane == "express")
    engine = int(daemon.request(paths, {"op": "ping"}, timeout=5)["pid"])
    environ = Path(f"/proc/{engine}/environ").read_bytes()
    assert secret.encode() not in environ
    names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
    assert names <= ENGINE_ENVIRONMENT | {"SSHWRAP_STATE_DIR"}
    assert "PATH" in names
    assert read_banner_through("127.0.0.1", port) == (BANNER, ECHO)
