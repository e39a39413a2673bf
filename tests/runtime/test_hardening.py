"""The engine and the askpass server under attack by the same user: out of descriptors, idle
and slow connections, a full listen backlog, malformed requests. Each serves on."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sshwrap import askpass
from sshwrap.runtime.client.auth import PromptKind, SecretServer
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import BannerServer, free_port
from sshwrap.store import ProfileStore
from sshwrap.usecases import up as tunnels
from tests.runtime.tunnel_helpers import (
    BANNER,
    SETTLE,
    ProfileWriter,
    eventually,
    read_banner_through,
)

PROMPT = "alice@127.0.0.1's password:"


@pytest.fixture
def engine(runtime_paths: StatePaths) -> Iterator[int]:
    """An engine serving ``runtime_paths``; its pid."""
    runtime_paths.ensure()
    daemon.ensure_running(runtime_paths, dict(os.environ))
    pid = int(daemon.request(runtime_paths, {"op": "ping"}, timeout=10)["pid"])
    yield pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a test that stopped it may have failed half-way


def _connect_idle(path: Path, count: int) -> list[socket.socket]:
    """Up to ``count`` connections that send nothing, until the listen backlog is full."""
    idle = []
    for _ in range(count):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.setblocking(False)
        try:
            conn.connect(str(path))
        except BlockingIOError:
            conn.close()
            break
        idle.append(conn)
    return idle


def _close(conns: list[socket.socket]) -> None:
    for conn in conns:
        conn.close()


def _log(paths: StatePaths) -> str:
    return daemon.log_path(paths).read_text(errors="replace")


def _engine_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- out of descriptors, idle connections --------------------------------------------------


def test_the_engine_outlives_running_out_of_descriptors(
        runtime_paths: StatePaths, store: ProfileStore, write_profile: ProfileWriter,
        banner_server: BannerServer) -> None:
    port = free_port()
    write_profile("held", [{"type": "local", "listen": f"127.0.0.1:{port}",
                            "to": f"127.0.0.1:{banner_server.port}"}])
    report = tunnels.up(store, ["held"], paths=runtime_paths)
    assert report.exit_code == 0, report
    pid = int(daemon.request(runtime_paths, {"op": "ping"}, timeout=10)["pid"])
    engine = psutil.Process(pid)
    # A few descriptors to spare: the idle connections below take them all.
    _soft, hard = engine.rlimit(psutil.RLIMIT_NOFILE)
    engine.rlimit(psutil.RLIMIT_NOFILE, (engine.num_fds() + 8, hard))
    idle = _connect_idle(daemon.socket_path(runtime_paths), 300)
    try:
        eventually(lambda: "Too many open files" in _log(runtime_paths) or
                   not _engine_alive(pid), "the engine ran out of descriptors")
        assert _engine_alive(pid), _log(runtime_paths)[-2000:]
        assert read_banner_through("127.0.0.1", port)[0] == BANNER  # the tunnel carries on
    finally:
        _close(idle)
    engine.rlimit(psutil.RLIMIT_NOFILE, (_soft, hard))
    assert daemon.request(runtime_paths, {"op": "ping"}, timeout=SETTLE)["pid"] == pid
    assert tunnels.status(store, ["held"], runtime_paths).tunnels[0].state.value == "up"
    assert read_banner_through("127.0.0.1", port)[0] == BANNER
    assert "Traceback" not in _log(runtime_paths)


def _reply(conn: socket.socket) -> dict[str, Any]:
    """The one reply line the engine sends before it closes the connection."""
    conn.settimeout(SETTLE)
    data = b""
    while chunk := conn.recv(1 << 16):
        data += chunk
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data[:200]
    reply: dict[str, Any] = json.loads(data)
    return reply


@pytest.mark.parametrize("slow", [False, True], ids=["idle", "a byte now and then"])
def test_a_connection_that_sends_no_request_is_cut_off(
        runtime_paths: StatePaths, engine: int, slow: bool) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(daemon.socket_path(runtime_paths)))
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.5):
                try:
                    conn.send(b" ")
                except OSError:
                    return

        if slow:
            threading.Thread(target=trickle, daemon=True).start()
        try:
            reply = _reply(conn)
        finally:
            stop.set()
    assert reply["error"]["exit_code"] == 2
    assert "no request within" in reply["error"]["problems"][0]["message"]


# -- malformed requests -----------------------------------------------------------------------

OPS = ("ping", "quit", "start", "stop", "events", "reload", "up", "down", "status", "restart")
PATH_NAMES = ("../../tmp/pwned", "../pwned", "/tmp/pwned", "a/b", ".hidden", "", "-rf",
              "x" * 65, "name\nwith\nlines", "nul\0byte", "..", "~/x")
WRONG = (None, 1, -1.5, True, "text", [], ["a", 1], {}, {"a": 1}, float("inf"))


def _valid(op: str) -> dict[str, Any]:
    asker = {"cwd": "/", "env": {}, "profiles": []}
    return {
        "start": {"op": "start", "name": "x", "wait": 1, "dirs": ["/"], "env": {}},
        "stop": {"op": "stop", "name": "x"},
        "up": {"op": "up", "names": ["x"], "all": False, **asker},
        "restart": {"op": "restart", "names": ["x"], "all": False, **asker},
        "down": {"op": "down", "names": ["x"], "all": False},
        "status": {"op": "status", "names": ["x"], **asker},
    }.get(op, {"op": op})


#: Values of the wrong type for each field (None where the field must be given).
INVALID: dict[str, tuple[object, ...]] = {
    "name": (None, 1, [], {}, True, ["x"]), "names": ("x", 1, ["x", 1], {"a": 1}, True),
    "wait": ("1", [], {}, True, -1.5, float("inf")), "dirs": (None, 1, "/", ["/", 1]),
    "env": (None, 1, [], {"a": 1}, "A=1"), "cwd": (None, 1, [], {}, "nul\0"),
    "all": (1, "yes", [], {}), "profiles": (1, "/", ["/", 1], {}),
}


def _wrong_field(rng: random.Random) -> bytes:
    """A request of a known op with one field of a wrong type (or missing)."""
    op = rng.choice([op for op in OPS if len(_valid(op)) > 1])
    message = _valid(op)
    key = rng.choice([k for k in message if k != "op"])
    message[key] = rng.choice(INVALID[key])
    if message[key] is None and rng.random() < 0.5:
        del message[key]
    return json.dumps(message).encode()


def _path_name(rng: random.Random) -> bytes:
    op = rng.choice(["start", "stop", "down", "status", "up", "restart"])
    message = _valid(op)
    bad = rng.choice(PATH_NAMES)
    if op in ("up", "restart") and bad.endswith(".toml"):
        bad += "x"
    if "name" in message:
        message["name"] = bad
    else:
        message["names"] = ["ok", bad]
    return json.dumps(message).encode()


def _bad_json(rng: random.Random) -> bytes:
    text = json.dumps(_valid(rng.choice(OPS)))
    return rng.choice([text[:rng.randrange(1, len(text))], text.replace('"', "'"),
                       "{" * rng.randrange(1, 100_000), "[" * 50 + "]" * 49, "NaN", "nul",
                       text + "}", '{"op": "ping", }']).encode()


def _not_an_object(rng: random.Random) -> bytes:
    return rng.choice([b"[]", b"1", b'"ping"', b"null", b"true", b'[{"op": "ping"}]',
                       b'{"op": 1}', b'{"op": null}', b'{"op": "nothing"}', b'{"op": []}',
                       b'{"op": "../../ping"}', b"{}"])


def _random_bytes(rng: random.Random) -> bytes:
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    return data.replace(b"\n", b"") or b"\xff"


def _huge(rng: random.Random) -> bytes:
    if rng.random() < 0.5:  # longer than any request: cut off before its end
        return b"x" * ((1 << 20) + rng.randrange(1, 1 << 18))
    return json.dumps({"op": "status", "names": ["n" * 500_000], "cwd": "/",
                       "env": {}}).encode()


KINDS = (_wrong_field, _path_name, _bad_json, _not_an_object, _random_bytes, _huge)


def _ask_raw(path: Path, data: bytes, *, end_line: bool) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))

        def send() -> None:
            with contextlib.suppress(OSError):  # it may stop reading a request too long
                conn.sendall(data + (b"\n" if end_line else b""))
                conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            return _reply(conn)
        finally:
            sender.join()


def test_malformed_requests_are_answered_as_bad_input_and_run_nothing(
        runtime_paths: StatePaths, engine: int, tmp_path: Path) -> None:
    rng = random.Random(22)
    path = daemon.socket_path(runtime_paths)
    tried: dict[str, int] = {}
    for number in range(300):
        kind = KINDS[number % len(KINDS)]
        data = kind(rng)
        reply = _ask_raw(path, data, end_line=number % 7 != 0)
        tried[kind.__name__] = tried.get(kind.__name__, 0) + 1
        # An error as data, whichever request it was: no request is answered as text.
        assert reply["error"]["exit_code"] == 2, (kind.__name__, data[:200], reply)
    print(f"malformed requests tried: {tried}")
    assert daemon.request(runtime_paths, {"op": "ping"}, timeout=10)["pid"] == engine
    log = _log(runtime_paths)
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    made = [p for p in (Path("/tmp/pwned.log"), Path("/tmp/pwned.json"),
                        runtime_paths.root.parent / "pwned.log",
                        runtime_paths.root / "pwned.log") if p.exists()]
    assert not made


# -- a full listen backlog -------------------------------------------------------------------


@contextlib.contextmanager
def _backlog_full(paths: StatePaths, pid: int) -> Iterator[None]:
    """The engine stopped (SIGSTOP) and its listen backlog full; on leaving, it goes on and
    the connections that filled it are closed."""
    os.kill(pid, signal.SIGSTOP)
    fillers: list[socket.socket] = []
    try:
        fillers = _connect_idle(daemon.socket_path(paths), 10_000)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.setblocking(False)
            with pytest.raises(BlockingIOError):
                probe.connect(str(daemon.socket_path(paths)))
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        _close(fillers)


def test_a_client_waits_out_a_full_backlog(runtime_paths: StatePaths, engine: int) -> None:
    answers: list[object] = []

    def ping() -> None:
        try:
            answers.append(daemon.request(runtime_paths, {"op": "ping"}, timeout=SETTLE))
        except Exception as error:
            answers.append(error)

    with _backlog_full(runtime_paths, engine):
        asker = threading.Thread(target=ping)
        asker.start()
        asker.join(1.0)  # it meets the full backlog (and, before, gave up at once)
    asker.join(SETTLE)
    assert len(answers) == 1 and isinstance(answers[0], dict), answers
    assert answers[0]["pid"] == engine


def test_events_waits_out_a_full_backlog(runtime_paths: StatePaths, engine: int) -> None:
    with _backlog_full(runtime_paths, engine):
        follower = subprocess.Popen(
            [sys.executable, "-m", "sshwrap", "events", "--json"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "SSHWRAP_STATE_DIR": str(runtime_paths.root)})
        with contextlib.suppress(subprocess.TimeoutExpired):
            follower.wait(5.0)  # it starts, and meets the full backlog
    try:
        def subscribed() -> bool:
            assert follower.poll() is None, follower.communicate()
            return bool(daemon.request(runtime_paths, {"op": "ping"},
                                       timeout=10).get("followers"))

        eventually(subscribed, "the follower subscribed")
    finally:
        follower.send_signal(signal.SIGINT)
        _out, err = follower.communicate(timeout=SETTLE)
    assert follower.returncode == 0, err
    assert "internal error" not in err


# -- the askpass server ---------------------------------------------------------------------


def test_a_slow_askpass_connection_does_not_hold_up_the_prompt(tmp_path: Path) -> None:
    with SecretServer("s3cret", kind=PromptKind.PASSWORD, root=tmp_path) as server:
        stop = threading.Event()
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.connect(str(server.socket_path))

        def trickle() -> None:
            while not stop.wait(0.5):
                try:
                    slow.send(b"x")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        try:
            answer = askpass.ask(str(server.socket_path), PROMPT, timeout=SETTLE)
        finally:
            stop.set()
            slow.close()
    assert answer == b"s3cret"


SERVER_OUT_OF_DESCRIPTORS = """
import os, resource, sys, time
from pathlib import Path
from sshwrap.runtime.client.auth import PromptKind, SecretServer

server = SecretServer("s3cret", kind=PromptKind.PASSWORD, root=Path(sys.argv[1])).start()
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
fillers = []
try:
    while True:
        fillers.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print(server.socket_path, flush=True)
sys.stdin.readline()  # the asker has connected: every accept fails for a while
time.sleep(1.0)
for fd in fillers:
    os.close(fd)
deadline = time.monotonic() + 60
while not server.answered and time.monotonic() < deadline:
    time.sleep(0.05)
server.close()
"""


def test_the_askpass_server_outlives_running_out_of_descriptors(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER_OUT_OF_DESCRIPTORS,
                               str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    try:
        path = server.stdout.readline().strip()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)  # as askpass.ask does, here so that it is in before the go
            conn.sendall(PROMPT.encode() + b"\n")
            conn.shutdown(socket.SHUT_WR)
            server.stdin.write("go\n")
            server.stdin.flush()
            conn.settimeout(SETTLE)
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
    finally:
        server.wait(SETTLE + 30)
    assert reply == askpass.ANSWER + b"s3cret"
