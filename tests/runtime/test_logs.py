"""``logs``: the last lines of a tunnel's log, following it, and a clear error without one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sshwrap.runtime.observe.logs import follow, tail_lines
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
