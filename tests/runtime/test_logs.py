"""``logs``: the last lines of a tunnel's log, following it, and a clear error without one."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sshwrap.runtime.observe.verify import LogReader
from sshwrap.runtime.system import logs
from sshwrap.runtime.system.logs import follow, tail_lines
from sshwrap.runtime.system.paths import StatePaths


def _log(state_dir: Path, name: str, text: str) -> Path:
    paths = StatePaths(state_dir).ensure()
    path = paths.log(name)
    path.write_text(text)
    return path


def _sshwrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, check=False)


def test_last_lines_without_carriage_returns(state_dir: Path) -> None:
    _log(state_dir, "db", "".join(f"line {i}\r\n" for i in range(100)))
    out = _sshwrap("logs", "db", "-n", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "line 97\nline 98\nline 99\n"
    assert _sshwrap("logs", "db").stdout.count("\n") == 50


def test_missing_log_is_a_clear_error(state_dir: Path) -> None:
    out = _sshwrap("logs", "nothere")
    assert out.returncode == 2
    assert "no log for tunnel 'nothere'" in out.stderr
    assert "sshwrap up nothere" in out.stderr


def test_tail_and_follow_see_appended_and_restarted_logs(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_text("a\nb\n")
    lines, end = tail_lines(path, 1)
    assert (lines, end) == (["b"], 4)
    stream = follow(path, end, interval=0.01)
    with path.open("a") as handle:
        handle.write("c\r\nd")
    assert next(stream) == "c"
    with path.open("a") as handle:
        handle.write("e\n")
    assert next(stream) == "de"
    path.write_text("fresh\n")  # truncated: a restarted tunnel's new log
    assert next(stream) == "fresh"


def test_follow_exits_zero_on_ctrl_c(state_dir: Path) -> None:
    path = _log(state_dir, "db", "first\n")
    proc = subprocess.Popen([sys.executable, "-m", "sshwrap", "logs", "db", "-f"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        with path.open("a") as handle:
            handle.write("second\n")
        assert proc.stdout.readline() == "second\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# -- the cap: cut in place, read by logical offset across the cuts ---------------------------

CAP = logs.MIN_CAP


def _writer(path: Path, count: int) -> subprocess.Popen[bytes]:
    """Another process appending numbered lines with O_APPEND, as ssh's -E does."""
    code = ("import os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)\n"
            "for i in range(int(sys.argv[2])):\n"
            "    os.write(fd, b'line %07d of the client\\n' % i)\n"
            "    if i % 200 == 0: time.sleep(0.001)\n")
    return subprocess.Popen([sys.executable, "-c", code, str(path), str(count)])


def test_follow_sees_every_line_once_while_the_log_is_cut(tmp_path: Path) -> None:
    path, count, cap = tmp_path / "t.log", 200_000, 1 << 20  # 5.4 MB through 1 MiB
    path.write_bytes(b"")
    seen: list[str] = []

    def read() -> None:  # as 'sshwrap logs -f' does, in a thread of its own
        for line in follow(path, 0, interval=0.001, keep_going=lambda: len(seen) < count):
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    writer = _writer(path, count)
    cuts = 0
    while writer.poll() is None or (reader.is_alive() and len(seen) < count):
        cuts += bool(logs.cap_log(path, cap))  # the engine's timer, as often as it can
        time.sleep(0.001)
    reader.join(30)
    assert writer.returncode == 0
    assert seen == [f"line {i:07d} of the client" for i in range(count)]
    assert cuts >= 4 and path.stat().st_size <= cap
    assert logs.end_offset(path) == count * 27  # logical: every byte ever written


def test_a_follower_left_behind_by_a_cut_is_told(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"first\n")
    stream = follow(path, 0, interval=0.01)
    assert next(stream) == "first"
    with path.open("ab") as log:
        log.write(b"".join(b"line %06d\n" % i for i in range(20_000)))
    assert logs.cap_log(path, CAP) > 0
    told = next(stream)
    assert told.startswith("--- sshwrap logs: ") and "bytes were cut from the log" in told
    rest = next(stream)
    assert rest.startswith("line ") and len(rest) == 11


@pytest.mark.parametrize("collapse", [True, False], ids=["collapse", "punch a hole"])
def test_reading_from_an_offset_across_a_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collapse: bool,
) -> None:
    if not collapse:  # as on tmpfs or btrfs: the filesystem cannot collapse a range
        real = logs._fallocate

        def no_collapse(fd: int, mode: int, offset: int, length: int) -> None:
            if mode & 0x08:
                raise OSError(errno.EOPNOTSUPP, "not supported")
            real(fd, mode, offset, length)

        monkeypatch.setattr(logs, "_fallocate", no_collapse)
    path = tmp_path / "t.log"
    path.write_bytes(b"".join(b"old %06d\n" % i for i in range(20_000)))  # 220 kB
    run_start = logs.end_offset(path)
    with path.open("ab") as log:
        log.write(b"".join(b"new %06d\n" % i for i in range(100)))
    before_cut = logs.read_text(path, run_start)

    dropped = logs.cap_log(path, CAP)

    assert dropped > 0
    assert (path.stat().st_size < CAP) is collapse
    assert path.stat().st_blocks * 512 <= CAP + 8192
    assert logs.read_text(path, run_start) == before_cut  # an offset after the cut: as before
    from_start = logs.read_text(path, 0)  # an offset the cut took: from the first whole line
    first = from_start.splitlines()[0]
    assert first.startswith("old ") and len(first) == 10
    assert from_start.endswith(before_cut)
    assert logs.end_offset(path) == run_start + len(before_cut)
    lines, end = tail_lines(path, 2)
    assert lines == ["new 000098", "new 000099"] and end == logs.end_offset(path)
    assert LogReader(path, run_start).read() == before_cut  # the diagnosis's reader


def test_a_log_under_its_cap_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"x\n" * 1000)
    assert logs.cap_log(path, CAP) == 0 and path.read_bytes() == b"x\n" * 1000
    assert logs.cap_from_env({"SSHWRAP_LOG_CAP": "1"}) == logs.MIN_CAP
    assert logs.cap_from_env({}) == logs.DEFAULT_CAP == 10 << 20
