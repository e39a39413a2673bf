"""A profile's hooks: run detached on a state change, bounded in output, number and lifetime.

Each hook runs under runtime/supervise/hookrun.py, a subreaper of its own: whatever the hook starts,
``setsid`` included, ends when the hook's program exits, at its timeout, when its tunnel goes
down and when the engine exits or dies. At most ``MAX_AT_ONCE`` hooks of one tunnel run at
once (the rest are skipped, and the log says so); a hook's output is read in chunks, a line
cut at ``MAX_LINE``, at most ``MAX_OUTPUT`` bytes of it logged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sshwrap.core.model import Profile
from sshwrap.textsafe import escaped

if TYPE_CHECKING:
    from sshwrap.runtime.supervise.events import Event

#: One line of a hook's output is cut here in the log.
MAX_LINE = 4096
#: Of one run of a hook, at most this much output is logged; the rest is read and dropped.
MAX_OUTPUT = 256 << 10
#: At most this many hooks of one tunnel run at once; one more is skipped.
MAX_AT_ONCE = 3
#: How long an exiting engine lets running hooks finish before it ends them.
DRAIN = 5.0
#: How long a hook's runner has to end the hook's processes once asked.
END_GRACE = 2.0
_RUNNER = str(Path(__file__).with_name("hookrun.py"))
_CHUNK = 64 << 10


@dataclass
class _Run:
    """One hook running: its runner's process once started, and whether it was asked to end."""
    tunnel: str
    process: subprocess.Popen[bytes] | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    asked_to_end: bool = False


# -- the environment ---------------------------------------------------------------------


#: A profile file as last read for its ``password_env``: its identity (device, inode, size,
#: times), and the variable it named.
_Seen = tuple[tuple[int, ...], str | None]


def _password_env_of(path: Path) -> str | None:
    """The ``password_env`` a profile file names, read raw: a profile that does not
    validate names its variable all the same."""
    from sshwrap.fsutil import read_regular
    from sshwrap.store import MAX_PROFILE_BYTES

    # Read as the store reads profiles: never a FIFO or a device a read would wait on.
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        data, _info = read_regular(path, MAX_PROFILE_BYTES + 1)
        named = tomllib.loads(data.decode()).get("password_env")
        return named if isinstance(named, str) else None
    return None


def _named_in(directory: Path, seen: dict[str, _Seen]) -> set[str]:
    """The ``password_env`` of every profile file in ``directory``; a file read before and
    unchanged since (same identity) is not read again (``seen``, updated)."""
    from sshwrap.store import SUFFIX

    names: set[str] = set()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.endswith(SUFFIX):
                continue
            try:
                info = entry.stat()
            except OSError:
                continue
            identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
                        info.st_ctime_ns)
            known = seen.get(entry.path)
            if known is None or known[0] != identity:
                if len(seen) >= _SEEN_MAX:
                    seen.clear()
                known = seen[entry.path] = (identity, _password_env_of(Path(entry.path)))
            if known[1] is not None:
                names.add(known[1])
    return names


#: How many profile files one Hooks remembers (a few hundred bytes each).
_SEEN_MAX = 4096


class Hooks:
    """The hooks run for the tunnels of one engine (or of one program using the Python API),
    and the names of every password variable it has seen: no hook's environment holds one
    of them. The engine drains them when it exits."""

    def __init__(self) -> None:
        self.runs: list[_Run] = []
        self.secret_names: set[str] = set()
        self.dirs: set[Path] = set()
        self.lock = threading.Lock()
        #: Each profile file as last read, so that a hook's start reads only what changed.
        self._seen: dict[str, _Seen] = {}
        self._seen_lock = threading.Lock()

    def remember(self, profile: Profile, dirs: Iterable[Path] = ()) -> None:
        """Note the profile's ``password_env`` and where profiles are found (``dirs``, its
        own directory): every hook run from now on is kept from them. Reads nothing: a
        state change with no hook costs no profile read."""
        with self.lock:
            if profile.password_env:
                self.secret_names.add(profile.password_env)
            self.dirs.update(Path(d) for d in dirs)
            if profile.source:
                self.dirs.add(Path(profile.source).parent)

    def password_variables(self, profile: Profile, dirs: Iterable[Path] = ()) -> set[str]:
        """Every variable a profile names as ``password_env``: this one, every profile this
        process has run, and every profile file of ``dirs``, of the directories tunnels of this
        process were started from, and of this profile's own directory (as they are now)."""
        self.remember(profile, dirs)
        with self.lock:
            names, folders = set(self.secret_names), set(self.dirs)
        with self._seen_lock:  # one reader of the files at a time: the cache is shared
            for folder in folders:
                names |= _named_in(folder, self._seen)
        return names

    def hook_env(self, profile: Profile, event: Event, base: Mapping[str, str] | None,
                 dirs: Iterable[Path] = ()) -> dict[str, str]:
        """The hook's environment: the user's (a notification needs its display and session
        bus) without any password variable of any profile and without the askpass channel; and
        SSHWRAP_TUNNEL, SSHWRAP_STATE, SSHWRAP_REASON."""
        from sshwrap.runtime.client.auth import ASKPASS_ENV
        from sshwrap.runtime.client.questions import PROMPT_ENV

        env = dict(os.environ if base is None else base)
        for name in (*ASKPASS_ENV, PROMPT_ENV, *self.password_variables(profile, dirs)):
            env.pop(name, None)
        env.update(SSHWRAP_TUNNEL=profile.name, SSHWRAP_STATE=event.to_state,
                   SSHWRAP_REASON=event.reason)
        return env

    def run_for(self, profile: Profile, event: Event, base_env: Mapping[str, str] | None,
                log_path: Path, dirs: Iterable[Path] = ()) -> threading.Thread | None:
        """Start the hook of ``event``'s new state, if the profile has one, in a thread of its
        own; the caller goes on at once. The thread, for tests to join. A tunnel going down
        first ends its hooks still running."""
        if event.to_state == "down":
            self.end_hooks(profile.name)
        argv = profile.hooks.for_state(event.to_state)
        if not argv:
            self.remember(profile, dirs)  # known from now on to every other hook
            return None
        what = f"on_{event.to_state}"
        env = self.hook_env(profile, event, base_env, dirs)
        entry = _Run(profile.name)
        with self.lock:
            running = sum(1 for r in self.runs if r.tunnel == profile.name)
            if running < MAX_AT_ONCE:
                self.runs.append(entry)
        if running >= MAX_AT_ONCE:
            _log(log_path, [f"{what}: skipped: {running} hooks of this tunnel still run "
                            f"(at most {MAX_AT_ONCE} at once)"])
            return None
        thread = threading.Thread(
            target=self._run_tracked, name=f"hook {profile.name} {event.to_state}", daemon=True,
            args=(entry, list(argv), env, log_path),
            kwargs={"what": what, "timeout": float(profile.hooks.timeout)})
        thread.start()
        return thread

    def end_hooks(self, tunnel: str | None = None) -> list[_Run]:
        """Ask the running hooks (of ``tunnel``, or all) to end, with everything they started;
        returns them without waiting."""
        with self.lock:
            runs = [r for r in self.runs if tunnel is None or r.tunnel == tunnel]
        for run in runs:
            run.asked_to_end = True
            if run.process is not None and run.process.returncode is None:
                with contextlib.suppress(OSError):
                    run.process.send_signal(signal.SIGTERM)  # hookrun ends the hook's tree
        return runs

    def drain(self, timeout: float = DRAIN) -> None:
        """Give the running hooks ``timeout`` seconds to end, then end them and what they
        started. Waits on their processes, never on their output."""
        deadline = time.monotonic() + timeout
        with self.lock:
            runs = list(self.runs)
        for run in runs:
            _wait_process(run, deadline)
        for run in self.end_hooks():
            _wait_process(run, time.monotonic() + END_GRACE)
            process = run.process
            if process is not None and process.poll() is None:  # its runner is stuck: kill all
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)

    def _run_tracked(self, entry: _Run, argv: list[str], env: dict[str, str],
                     log_path: Path, *, what: str, timeout: float) -> None:
        try:
            run(argv, env, log_path, what, timeout, entry=entry)
        finally:
            entry.ended.set()
            with self.lock, contextlib.suppress(ValueError):
                self.runs.remove(entry)


def _wait_process(run: _Run, deadline: float) -> None:
    while run.process is None and not run.ended.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)  # still starting
    if run.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.process.wait(max(0.0, deadline - time.monotonic()))


# -- one run -------------------------------------------------------------------------------


def _log(log_path: Path, texts: list[str]) -> None:
    """Lines into the tunnel's log, marked as sshwrap's hook lines, in one write."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    text = "".join(f"--- sshwrap hook {stamp}: {t}\n" for t in texts)
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(text)


class _Output:
    """A hook's output, cut into logged lines as it comes; never more than a line held."""

    def __init__(self, log_path: Path, what: str) -> None:
        self.log_path, self.what = log_path, what
        self.partial = b""
        self.skipping = False  # in the rest of a line already cut
        self.logged = 0
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        if self.logged >= MAX_OUTPUT:
            self.dropped += len(chunk)
            return
        lines: list[str] = []
        *complete, rest = (self.partial + chunk).split(b"\n")
        for raw in complete:
            if self.skipping:
                self.skipping = False
                continue
            lines.append(self._line(raw))
        if len(rest) > MAX_LINE and not self.skipping:
            lines.append(self._line(rest) + " [cut]")
            self.skipping, rest = True, b""
        self.partial = b"" if self.skipping else rest
        self._write(lines)

    def close(self) -> None:
        if self.partial and not self.skipping and self.logged < MAX_OUTPUT:
            self._write([self._line(self.partial)])
        if self.dropped:
            _log(self.log_path, [f"{self.what}: {self.dropped} more bytes of output not "
                                 f"logged (at most {MAX_OUTPUT} a run)"])

    def _line(self, raw: bytes) -> str:
        return raw[:MAX_LINE].decode("utf-8", "replace")

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.logged += sum(len(line) + 1 for line in lines)
            _log(self.log_path, [f"{self.what}: | {escaped(line)}" for line in lines])


def run(argv: list[str], env: dict[str, str], log_path: Path, what: str,
        timeout: float, *, entry: _Run | None = None) -> int | None:
    """Run one hook to its end, or end it and everything it started at ``timeout``; its
    exit status (None when it could not start or was ended). What it writes goes to the
    log, marked as the hook's, so that it is never read as the client's."""
    program = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        _log(log_path, [f"{what}: {escaped(argv[0])} not found on PATH; not run"])
        return None
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", _RUNNER, str(os.getpid()), program, *argv[1:]],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, cwd="/", close_fds=True)
    except OSError as error:
        _log(log_path, [f"{what}: {escaped(argv[0])} could not start: {error.strerror}"])
        return None
    if entry is not None:
        entry.process = process
        if entry.asked_to_end:  # its tunnel went down while it started
            process.send_signal(signal.SIGTERM)
    _log(log_path, [f"{what}: started {escaped(program)} (pid {process.pid})"])
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            process.send_signal(signal.SIGTERM)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    output = _Output(log_path, what)
    try:
        assert process.stdout is not None  # noqa: S101 - asked for above
        fd = process.stdout.fileno()
        while chunk := os.read(fd, _CHUNK):  # ends once every process of the hook is gone
            output.feed(chunk)
        output.close()
        code = process.wait()
    finally:
        timer.cancel()
        if process.stdout is not None:
            process.stdout.close()
    if expired.is_set():
        _log(log_path, [f"{what}: killed after {timeout:g} s, with everything it started"])
        return None
    if entry is not None and entry.asked_to_end:
        _log(log_path, [f"{what}: ended with its tunnel or the engine, with everything it "
                        "started"])
        return None
    _log(log_path, [f"{what}: exited with status {code}"])
    return code
