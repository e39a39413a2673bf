"""Temp files of a write killed with kill -9 are removed by the next write, and only those."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sshwrap.fsutil import TEMP_SUFFIX, atomic_write, remove_stale_temps, write_temp
from sshwrap.sshconfig import owned

from .conftest import DB_PROFILE, Workspace

ROOT = Path(__file__).resolve().parents[2]

#: Runs a real sshwrap write in a child that stops just before its rename (the temp file is
#: written and synced), says so on stdout, and waits there to be killed.
_STOP_BEFORE_RENAME = """
import os, signal, sys
real_replace = os.replace
def stop(src, dst, *rest, **kw):
    if str(src).endswith({suffix!r}):
        sys.stdout.write("temp written\\n"); sys.stdout.flush()
        while True:
            signal.pause()
    return real_replace(src, dst, *rest, **kw)
os.replace = stop
"""


def _killed_mid_write(program: str, env: dict[str, str] | None = None) -> None:
    """Run ``program`` after the stop-before-rename patch, and kill -9 it mid-write."""
    source = _STOP_BEFORE_RENAME.format(suffix=TEMP_SUFFIX) + textwrap.dedent(program)
    child = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**(env or os.environ),
                                                          "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None
        said = child.stdout.readline()
        assert said == b"temp written\n", child.stderr.read() if child.stderr else b""
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_config_sync_killed_mid_write_is_cleaned_by_the_next_sync(
        workspace: Workspace) -> None:
    workspace.config.write_bytes(b"Host old\n    User me\n")
    workspace.config.chmod(0o600)
    workspace.add_profile("db")
    folder = workspace.config.parent
    _killed_mid_write(f"""
        from pathlib import Path
        from sshwrap.store import ProfileStore
        from sshwrap.usecases import sshconfig
        sshconfig.sync(ProfileStore((Path({str(workspace.store.dirs[0])!r}),)),
                       config_file=Path({str(workspace.config)!r}))
        """)
    left = _temps(folder)
    assert left, "the killed sync left no temp file: the test did not kill it mid-write"
    assert workspace.config.read_bytes() == b"Host old\n    User me\n"  # never half-written

    done = subprocess.run([sys.executable, "-m", "sshwrap", "config", "sync", "--file",
                           str(workspace.config)], capture_output=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _temps(folder) == []
    assert owned.is_owned(workspace.owned.read_bytes())


def test_atomic_write_killed_mid_write_is_cleaned_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"old\n")
    _killed_mid_write(f"""
        from pathlib import Path
        from sshwrap.fsutil import atomic_write
        atomic_write(Path({str(path)!r}), b"new\\n")
        """)
    assert len(_temps(tmp_path)) == 1 and path.read_bytes() == b"old\n"
    atomic_write(path, b"newer\n")
    assert _temps(tmp_path) == [] and path.read_bytes() == b"newer\n"


def test_a_live_writers_temp_and_files_not_named_by_sshwrap_stay(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_bytes(b"x\n")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        # a temp named as a live process would name it: that process is writing it now
        live = tmp_path / _temp_as(sleeper.pid, target.name)
        live.write_bytes(b"being written")
        theirs = tmp_path / ".config.notours.sshwrap-tmp"
        theirs.write_bytes(b"someone else's")
        other = tmp_path / ".other.1-1-aaaaaaaaaaaa.sshwrap-tmp"  # another file's temp
        other.write_bytes(b"x")
        link = tmp_path / ".config.1-1-bbbbbbbbbbbb.sshwrap-tmp"
        link.symlink_to(target)
        assert remove_stale_temps(tmp_path, target.name) == []
        assert live.exists() and theirs.exists() and other.exists() and link.is_symlink()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same file once its writer is gone
    assert remove_stale_temps(tmp_path, target.name) == [live]
    assert target.read_bytes() == b"x\n"


def test_a_reused_pid_does_not_keep_a_dead_writers_temp(tmp_path: Path) -> None:
    # a live pid with another start time: the writer was an earlier holder of that pid
    tmp = write_temp(tmp_path, "config", b"half", 0o600)
    pid, start, token = tmp.name.removeprefix(".config.").removesuffix(TEMP_SUFFIX).split("-")
    assert int(pid) == os.getpid()
    assert remove_stale_temps(tmp_path, "config") == []  # ours, being written
    stale = tmp_path / f".config.{os.getppid()}-{int(start) + 1}-{token}{TEMP_SUFFIX}"
    tmp.rename(stale)
    assert remove_stale_temps(tmp_path, "config") == [stale]


def _temp_as(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        start = handle.read().rsplit(b")", 1)[1].split()[19].decode()
    return f".{name}.{pid}-{start}-cccccccccccc{TEMP_SUFFIX}"


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(DB_PROFILE)
    path.chmod(0o640)
    atomic_write(path, b"x = 1\n", mode=0o600)
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_bytes() == b"x = 1\n"
