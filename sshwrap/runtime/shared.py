"""Shared connections: one OpenSSH ControlMaster per destination, forwards added with ``-O``.

Tunnels that opt in (``share_connection = true`` or ``up --share``) and whose connection
settings are identical use one master connection. The master has a small supervisor of its
own (``python -m sshwrap.runtime.shared``): it restarts the master when it dies and stops it
once no tunnel uses it any more. Each tunnel's own supervisor adds its forwards to the master
with ``ssh -O forward``, watches the master, re-adds them after a restart, and removes them
with ``ssh -O cancel`` on ``down`` without touching the other tunnels on the master.

A shared tunnel's record names the master (``TunnelRecord.shared``) and carries the master's
pid, so that verification, ``status`` and ``ports`` see the master as the listener's owner.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import FORWARD_FLAG
from sshwrap.core.model import Client, ForwardType, Profile, RestartPolicy
from sshwrap.core.parse import profile_to_mapping
from sshwrap.errors import (
    ConnectionFailed,
    ExitCode,
    ForwardingFailed,
    InvalidInput,
    NotReady,
    SshwrapError,
    StateConflict,
)
from sshwrap.runtime import sockets, state, unixsock
from sshwrap.runtime.paths import STATE_DIR_ENV, StatePaths
from sshwrap.runtime.rendezvous import CONTROL_DIR, KEY_LENGTH, control_dir_fits
from sshwrap.runtime.state import ExpectedForward, TunnelRecord
from sshwrap.runtime.verify import ForwardCheck, check_forwards

if TYPE_CHECKING:
    from sshwrap.runtime.auth import ClientStarter
    from sshwrap.runtime.launch import Launched
    from sshwrap.runtime.supervisor import Supervisor
    from sshwrap.store import ProfileStore

MODULE = "sshwrap.runtime.shared"
#: Profile keys that do not change the connection itself: tunnels differing only in these
#: may share one master. Everything else (host, port, user, jump chain, ssh_config_file,
#: identity, options, host-key policy, auth, keepalive, compression) must be equal.
NOT_CONNECTION_KEYS = frozenset({"description", "tags", "forward", "restart", "share_connection"})
#: How often a tunnel's supervisor checks that its master still runs, and the master's
#: supervisor that some tunnel still uses it.
WATCH_INTERVAL = 0.2
USERS_INTERVAL = 1.0
POLL_INTERVAL = 0.02
MUX_TIMEOUT = 10.0
#: A listener made by ``-O forward`` exists when the command returns; allow a scan race.
VERIFY_WAIT = 5.0
STOP_TIMEOUT = 5.0
#: How long a waiting tunnel gives a restarting master (beyond the master's own backoff).
MASTER_RESTART_WAIT = 60.0
LOCK_GRACE = 30.0
#: The phase a shared tunnel records while it leaves its master.
STOPPING = "stopping"


# -- naming and paths ---------------------------------------------------------------------


def wants_sharing(profile: Profile, share: bool) -> bool:
    """Whether the tunnel of ``profile`` runs on a shared master (ssh only: plink has none)."""
    return profile.client is Client.SSH and (profile.share_connection or share)


def connection_key(profile: Profile) -> str:
    """A short digest of every setting that shapes the connection (not the forwards)."""
    mapping = {k: v for k, v in profile_to_mapping(profile).items()
               if k not in NOT_CONNECTION_KEYS}
    canonical = json.dumps(mapping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def master_name(key: str) -> str:
    return f"shared-{key}"


def master_paths(paths: StatePaths) -> StatePaths:
    """Records, logs and locks of the masters: beside the tunnels', never listed as tunnels."""
    return StatePaths(paths.root / "shared")


def _private_dir(path: Path) -> Path:
    """Create ``path`` 0700, or accept it only if it is a real directory of this user."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise StateConflict(f"{path}: not a directory of this user; control sockets cannot "
                            "live there", hint=f"remove {path}, or set {STATE_DIR_ENV}")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def control_dir(paths: StatePaths, env: dict[str, str] | None = None) -> Path:
    """The private (0700) directory of the control sockets.

    ``<state>/ctl`` when its socket paths are short enough; otherwise a directory named
    after the state dir under ``$XDG_RUNTIME_DIR`` or the temp dir, the same for every
    process of this state dir.
    """
    preferred = paths.root / CONTROL_DIR
    if control_dir_fits(preferred):
        return _private_dir(preferred)
    env = dict(os.environ) if env is None else env
    tag = hashlib.sha256(os.fsencode(paths.root.resolve())).hexdigest()[:8]
    bases = [Path(env["XDG_RUNTIME_DIR"])] if env.get("XDG_RUNTIME_DIR") else []
    bases.append(Path(tempfile.gettempdir()))
    for base in bases:
        folder = base / f"sshwrap-{os.getuid()}-{tag}"
        if base.is_dir() and control_dir_fits(folder):
            return _private_dir(folder)
    raise StateConflict("no directory with a path short enough for a control socket",
                        hint="set TMPDIR to a short path such as /tmp")


def control_path(paths: StatePaths, key: str) -> Path:
    return control_dir(paths) / key


# -- talking to a master ------------------------------------------------------------------


def mux_argv(control: Path, command: str, args: Sequence[str] = ()) -> list[str]:
    """``ssh -S CONTROL -O COMMAND ...``: no config is read, nothing connects anywhere."""
    from sshwrap.runtime.launch import find_program

    return [find_program(Client.SSH), "-F", "/dev/null", "-o", "BatchMode=yes",
            "-S", str(control), "-O", command, *args, "--", "shared"]


def mux(control: Path, command: str, args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(mux_argv(control, command, args), capture_output=True, text=True,
                              timeout=MUX_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 255, "", f"ssh -O {command} timed out")


def forward_args(forward: ExpectedForward) -> list[str]:
    """The ``-L/-R/-D SPEC`` of one expanded forward, exactly as the compiler writes it
    (``listen`` and ``to`` are kept rendered in ssh's syntax)."""
    kind = ForwardType(forward.type)
    spec = forward.listen if kind is ForwardType.DYNAMIC or forward.to is None else \
        f"{forward.listen}:{forward.to}"
    return [FORWARD_FLAG[kind], spec]


def master_argv(profile: Profile, facts: HostFacts, control: Path, log_path: Path) -> list[str]:
    """The master: the profile's connection with no forwards, listening on ``control``."""
    from sshwrap.core.compile.ssh import compile_ssh
    from sshwrap.runtime.launch import find_program

    bare = replace(profile, forwards=())
    return compile_ssh(bare, facts, program=find_program(Client.SSH), extra_args=[
        "-E", str(log_path), "-v", "-o", "BatchMode=yes",
        "-M", "-S", str(control), "-o", "ControlPersist=no"])


@contextlib.contextmanager
def _try_lock(paths: StatePaths, name: str) -> Iterator[bool]:
    """The name's lock if free right now (True), else nothing held (False)."""
    paths.ensure()
    fd = os.open(paths.lock(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def users(paths: StatePaths, key: str, *, besides: str | None = None) -> list[str]:
    """Tunnels on the master of ``key`` whose supervisor still runs and is not stopping
    (``besides`` excluded).

    A stopping tunnel says so before it takes the master's lock to leave: of tunnels stopped
    at once, the last to hold the lock sees all others stopping and stops the master, so it
    is gone when ``down --all`` returns.
    """
    found = []
    for name in state.recorded_names(paths):
        if name == besides:
            continue
        try:
            record = state.read_record(paths, name)
        except StateConflict:
            continue
        if record is not None and record.shared == key and record.phase != STOPPING \
                and state.live_supervisor(record):
            found.append(name)
    return found


def _remove_socket(control: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        control.unlink()


def stop_master(paths: StatePaths, key: str, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the master of ``key`` and its supervisor (the caller holds the master's lock)."""
    from sshwrap.runtime.launch import stop_group, terminate_process

    mpaths = master_paths(paths)
    name = master_name(key)
    record = state.read_record(mpaths, name)
    if record is None:
        return
    supervisor = state.live_supervisor(record)
    if supervisor is not None:
        terminate_process(supervisor.pid, timeout=timeout)  # a SIGKILL takes the master along
    latest = state.read_record(mpaths, name) or record
    if state.live_process(latest) is not None:
        stop_group(latest.pid, timeout=timeout)
    with contextlib.suppress(StateConflict):
        _remove_socket(control_path(paths, key))
    state.remove_record(mpaths, name)


def cancel_forwards(control: Path, forwards: Sequence[ExpectedForward]) -> None:
    """Remove forwards from a master (best effort: a dead master has none left)."""
    if not control.exists():
        return
    for forward in forwards:
        mux(control, "cancel", forward_args(forward))


def release(paths: StatePaths, record: TunnelRecord, *, timeout: float = STOP_TIMEOUT,
            cancel: bool = True) -> None:
    """Take one tunnel off its master: cancel its forwards (unless ``cancel`` is False: it
    never added them), and stop the master when no other tunnel uses it. Safe to repeat."""
    if record.shared is None:
        return
    key = record.shared
    mpaths = master_paths(paths)
    if cancel:
        with contextlib.suppress(StateConflict):
            cancel_forwards(control_path(paths, key), record.forwards)
    with state.name_lock(mpaths, master_name(key), timeout=timeout + LOCK_GRACE):
        if not users(paths, key, besides=record.name):
            stop_master(paths, key, timeout)


# -- the master's supervisor --------------------------------------------------------------


def master_command(profile_name: str, key: str, *, wait: float) -> list[str]:
    return [sys.executable, "-m", MODULE, profile_name, "--key", key, "--wait", f"{wait:g}"]


def _master_error(record: TunnelRecord | None, who: str, log_path: Path) -> SshwrapError:
    """The error the master's supervisor recorded for a failed start, or a plain one."""
    if record is not None and record.phase == "failed" and record.last_failure:
        from sshwrap.runtime.tunnels import _error_from_record

        return _error_from_record(record, who, 1, log_path)
    return ConnectionFailed(f"{who}: the shared connection's supervisor ended before the "
                            "connection was up", hint=f"see {log_path}")


def ensure_master(paths: StatePaths, profile: Profile, key: str, *, wait: float,
                  secret: str | None = None) -> TunnelRecord:
    """The running, verified master of ``key``; started (with its supervisor) if need be.

    The caller's own record (``shared = key``) must be written first: a master whose
    supervisor sees no tunnel using it stops.
    """
    mpaths = master_paths(paths).ensure()
    name = master_name(key)
    with state.name_lock(mpaths, name, timeout=wait + LOCK_GRACE):
        record = state.read_record(mpaths, name)
        if record is not None and state.live_supervisor(record) is None:
            if record.phase == "failed":
                state.remove_record(mpaths, name)  # reported once; the next up starts afresh
                raise _master_error(record, profile.name, mpaths.log(name))
            if state.live_process(record) is not None:  # pragma: no cover - dies with it
                from sshwrap.runtime.launch import stop_group

                stop_group(record.pid, timeout=STOP_TIMEOUT)
            state.remove_record(mpaths, name)
            record = None
        supervisor_pid = None if record is None else record.supervisor_pid
        if record is None:
            supervisor_pid = _spawn_master_supervisor(paths, profile, key, wait, secret)
        return _wait_master_up(mpaths, name, supervisor_pid, profile.name,
                               wait if record is None else MASTER_RESTART_WAIT)


def _spawn_master_supervisor(paths: StatePaths, profile: Profile, key: str, wait: float,
                             secret: str | None) -> int:
    from sshwrap.runtime.auth import client_env

    mpaths = master_paths(paths)
    env = client_env(profile)
    env[STATE_DIR_ENV] = str(paths.root)
    fd = os.open(mpaths.log(master_name(key)), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        # Detached: the master outlives any one tunnel's supervisor; it stops by itself
        # once no live supervisor uses it.
        child = subprocess.Popen(master_command(profile.name, key, wait=wait),
                                 stdin=subprocess.PIPE, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True, env=env)
    if child.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            if secret is not None:
                child.stdin.write(secret.encode() + b"\n")
            child.stdin.close()
    return child.pid


def _wait_master_up(mpaths: StatePaths, name: str, supervisor_pid: int | None, who: str,
                    timeout: float) -> TunnelRecord:
    from sshwrap.runtime.launch import process_gone

    deadline = time.monotonic() + timeout
    while True:
        record = state.read_record(mpaths, name)
        if record is not None and record.supervisor_pid == supervisor_pid:
            if record.phase == "up" and state.live_process(record) is not None:
                return record
            if record.phase == "failed" and state.live_supervisor(record) is None:
                state.remove_record(mpaths, name)
                raise _master_error(record, who, mpaths.log(name))
        if supervisor_pid is not None and process_gone(supervisor_pid):
            record = state.read_record(mpaths, name)
            state.remove_record(mpaths, name)
            raise _master_error(record, who, mpaths.log(name))
        if time.monotonic() >= deadline:
            raise NotReady(f"{who}: the shared connection was not up within {timeout:g} s",
                           hint=f"see {mpaths.log(name)}")
        time.sleep(POLL_INTERVAL * 2)


class Stopping(BaseException):
    """Raised by the master supervisor's SIGTERM handler."""


@dataclass
class MasterSupervisor:
    """Keeps one master running while tunnels use it; restarts it with backoff."""

    profile: Profile
    key: str
    paths: StatePaths
    first_wait: float
    secret: str | None = None
    log: TextIO = sys.stderr

    def __post_init__(self) -> None:
        import random

        self.mpaths = master_paths(self.paths).ensure()
        self.name = master_name(self.key)
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.child: Launched | None = None
        self.record: TunnelRecord | None = None
        self._starter: ClientStarter | None = None
        self._stopping = False

    def say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.log.write(f"--- sshwrap shared connection {self.name} {stamp}: {text}\n")
        self.log.flush()

    def _update(self, **changes: object) -> None:
        if self.record is not None:
            self.record = replace(self.record, **changes)  # type: ignore[arg-type]
            state.write_record(self.mpaths, self.record)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            self._stopping = True
            raise Stopping(signal.Signals(signum).name)

    def _stop_child(self) -> None:
        from sshwrap.runtime.launch import stop_group

        if self._starter is not None:
            self._starter.settle()
        if self.child is not None:
            stop_group(self.child.pid, timeout=STOP_TIMEOUT)
            self.child.popen.poll()
            self.child = None

    def _cleanup(self) -> None:
        self._stop_child()
        with contextlib.suppress(StateConflict):
            _remove_socket(control_path(self.paths, self.key))
        state.remove_record(self.mpaths, self.name)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._supervise()
        except Stopping:
            self.say("stopping on request")
            self._cleanup()
            return int(ExitCode.OK)
        finally:
            self._stop_child()

    def _start(self, argv: list[str], control: Path, wait: float) -> Launched:
        from sshwrap.runtime.auth import ClientStarter

        if control.exists():  # a master killed -9 leaves its socket; ssh would not replace it
            if mux(control, "check").returncode == 0:
                mux(control, "exit")
            _remove_socket(control)
        if self._starter is None:
            self._starter = ClientStarter(self.profile, self.secret, self.paths.root)
        launched = self.child = self._starter.start(
            self.name, argv, self.mpaths.log(self.name), owned_by_parent=True)
        self._update(pid=launched.pid, create_time=launched.create_time, argv=launched.argv,
                     started_at=time.time(), log_offset=launched.log_offset, verified=False,
                     next_retry=None)
        wait_master_ready(launched, self.profile, control, wait=wait)
        self._starter.settle()
        return launched

    def _supervise(self) -> int:
        import psutil

        from sshwrap.machine import host_facts
        from sshwrap.runtime.supervisor import (
            STABLE_AFTER,
            backoff_delay,
            first_hop,
            is_fatal,
            wait_for_path,
        )

        control = control_path(self.paths, self.key)
        argv = master_argv(self.profile, host_facts(), control, self.mpaths.log(self.name))
        me = psutil.Process(os.getpid())
        self.record = TunnelRecord(
            name=self.name, pid=0, create_time=0.0, argv=(), profile_hash=self.key,
            client=Client.SSH.value, started_at=time.time(), forwards=(),
            log_path=str(self.mpaths.log(self.name)), supervisor_pid=me.pid,
            supervisor_create_time=me.create_time(), supervisor_argv=tuple(me.cmdline()),
            shared=self.key)
        self._update(phase="starting")
        failures = restarts = 0
        first = True
        while True:
            try:
                launched = self._start(argv, control,
                                       self.first_wait if first else MASTER_RESTART_WAIT)
            except SshwrapError as error:
                self._stop_child()
                if first or is_fatal(error):
                    self._update(phase="failed", last_failure=error.message,
                                 failure_code=int(error.exit_code), failure_hint=error.hint)
                    self.say(f"failed: {error.message}")
                    return int(error.exit_code)
                failures += 1
                delay = backoff_delay(failures, self.rng)
                self._update(phase="reconnecting", last_failure=error.message,
                             next_retry=time.time() + delay)
                self.say(f"reconnecting in {delay:.1f} s: {error.message}")
                wait_for_path(first_hop(self.profile), delay)
                if self._unused():
                    return int(ExitCode.OK)
                continue
            first = False
            self._update(phase="up", verified=True)
            self.say(f"up (master pid {launched.pid})")
            up_since = time.monotonic()
            if self._watch(launched):
                return int(ExitCode.OK)
            self.child = None
            if time.monotonic() - up_since >= STABLE_AFTER:
                failures = 0  # a master that stayed up a while starts the backoff over
            failures += 1
            restarts += 1
            delay = backoff_delay(failures, self.rng)
            reason = f"the master (pid {launched.pid}) ended with status " \
                     f"{launched.popen.returncode}"
            self._update(phase="reconnecting", verified=False, last_failure=reason,
                         restarts=restarts, next_retry=time.time() + delay)
            self.say(f"{reason}; restarting in {delay:.1f} s")
            wait_for_path(first_hop(self.profile), delay)

    def _watch(self, launched: Launched) -> bool:
        """Until the master ends (False) or no tunnel uses it any more (True: stopped)."""
        next_users = time.monotonic() + USERS_INTERVAL
        while launched.popen.poll() is None:
            time.sleep(WATCH_INTERVAL)
            if time.monotonic() >= next_users:
                next_users = time.monotonic() + USERS_INTERVAL
                if self._unused():
                    return True
        return False

    def _unused(self) -> bool:
        """When no live tunnel uses the master: stop everything (under the master's lock,
        so that no tunnel joins meanwhile) and say so."""
        with _try_lock(self.mpaths, self.name) as locked:
            if not locked or users(self.paths, self.key):
                return False
            self.say("no tunnel uses the shared connection any more; stopping it")
            self._cleanup()
            return True


def wait_master_ready(launched: Launched, profile: Profile, control: Path, *,
                      wait: float) -> None:
    """Until the master answers on its control socket (it listens once authenticated)."""
    from sshwrap.runtime.verify import LogReader, failure_from_log

    deadline = time.monotonic() + wait
    reader = LogReader(launched.log_path, launched.log_offset)
    while True:
        if launched.popen.poll() is not None:
            raise failure_from_log(profile.name, reader.read(), profile)
        if control.exists() and mux(control, "check").returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{profile.name}: the shared connection was not ready after "
                           f"{wait:g} s", hint="raise --wait, or run 'sshwrap check'")
        time.sleep(POLL_INTERVAL)


# -- a tunnel on a master -----------------------------------------------------------------


def add_forwards(name: str, control: Path, forwards: Sequence[ExpectedForward],
                 master_pid: int) -> None:
    """``-O forward`` each forward; the first refusal raises the error that explains it."""
    unixsock.clear_stale_paths(f.path for f in forwards if f.type == "local")
    for forward in forwards:
        result = mux(control, "forward", forward_args(forward))
        if result.returncode == 0:
            continue
        from sshwrap.runtime.verify import port_taken_error, refused_error

        if forward.type == "remote":
            raise refused_error(name, ForwardCheck(forward, False, "", refused=True))
        check = check_forwards([forward], master_pid, sockets.listening_sockets(), None)[0]
        if check.holder is not None or check.blocked:
            raise port_taken_error(name, check)
        why = result.stderr.strip().splitlines()[-1:] or ["no reason given"]
        raise ForwardingFailed(f"{name}: the shared connection did not add {forward.type} "
                               f"forward {forward.listen}: {why[0]}")


def verify_forwards(name: str, forwards: Sequence[ExpectedForward], master_pid: int) -> None:
    """Every local and dynamic listener exists and belongs to the master (remote forwards
    were confirmed by ``-O forward``'s exit status: the master waits for the server)."""
    from sshwrap.runtime.verify import port_taken_error

    deadline = time.monotonic() + VERIFY_WAIT
    while True:
        checks = check_forwards(forwards, master_pid, sockets.listening_sockets(), None)
        bad = [c for c in checks if not c.healthy]
        if not bad:
            return
        if bad[0].holder is not None:
            raise port_taken_error(name, bad[0])
        if time.monotonic() >= deadline:
            raise ForwardingFailed(f"{name}: {bad[0].forward.listen}: {bad[0].detail} after "
                                   "it was added to the shared connection")
        time.sleep(POLL_INTERVAL)


def conflicting_user(paths: StatePaths, name: str, key: str,
                     forwards: Sequence[ExpectedForward]) -> tuple[str, str] | None:
    """Another tunnel on the same master with a forward on the same address: the master
    would accept the duplicate silently, and that tunnel's ``down`` would cut this one."""
    mine = {(f.type == "remote", f.listen) for f in forwards}
    for other in users(paths, key, besides=name):
        record = state.read_record(paths, other)
        for forward in record.forwards if record is not None else ():
            if (forward.type == "remote", forward.listen) in mine:
                return other, forward.listen
    return None


class SharedTunnel:
    """The tunnel half of a supervisor whose forwards ride on a shared master."""

    def __init__(self, supervisor: Supervisor, profile: Profile, digest: str,
                 forwards: tuple[ExpectedForward, ...]) -> None:
        self.sup = supervisor
        self.profile = profile
        self.digest = digest
        self.forwards = forwards
        self.key = connection_key(profile)
        self.paths = supervisor.paths
        self.name = supervisor.name
        #: True while this tunnel's forwards may be on the master (from the first -O forward).
        self.added = False

    def release(self) -> None:
        """On stop: off the master (its forwards cancelled; the master stopped if last)."""
        if self.sup.record is not None:
            with contextlib.suppress(SshwrapError):
                self.sup._update(phase=STOPPING)
                release(self.paths, self.sup.record, cancel=self.added)

    def run(self) -> int:
        from sshwrap.runtime.supervisor import RESTART_READY_WAIT, backoff_delay, first_hop
        from sshwrap.runtime.supervisor import wait_for_path as wait_path

        sup = self.sup
        pid, create_time, own_argv = sup._identity()
        sup.record = TunnelRecord(
            name=self.name, pid=0, create_time=0.0, argv=(), profile_hash=self.digest,
            client=Client.SSH.value, started_at=time.time(), forwards=self.forwards,
            log_path=str(self.paths.log(self.name)), supervisor_pid=pid,
            supervisor_create_time=create_time, supervisor_argv=own_argv, shared=self.key)
        sup.on_stop = self.release
        sup._update(phase="starting")  # registered: the master's supervisor counts it
        failures = restarts = 0
        first = True
        while True:
            try:
                master = self._attach(first, sup.first_wait if first else RESTART_READY_WAIT)
            except SshwrapError as error:
                if (first and not sup.foreground) or self._fatal(error):
                    self.release()
                    sup._update(phase="failed", last_failure=error.message,
                                failure_code=int(error.exit_code), failure_hint=error.hint,
                                verified=False)
                    sup.say(f"failed: {error.message}")
                    return int(error.exit_code)
                failures += 1
                restarts += 1
                delay = backoff_delay(failures, sup.rng)
                sup._update(phase="reconnecting", verified=False, last_failure=error.message,
                            failure_hint=error.hint, failure_code=int(error.exit_code),
                            next_retry=time.time() + delay, restarts=restarts)
                sup.say(f"reconnecting in {delay:.1f} s: {error.message}")
                wait_path(first_hop(self.profile), delay)
                continue
            first = False
            sup._update(pid=master.pid, create_time=master.create_time, argv=master.argv,
                        started_at=time.time(), phase="up", verified=True, next_retry=None)
            sup.say(f"up on the shared connection (master pid {master.pid})")
            while state.live_process(master) is not None:
                time.sleep(WATCH_INTERVAL)
            reason = f"the shared connection (master pid {master.pid}) ended"
            sup.say(reason)
            if self.profile.restart is RestartPolicy.NO:
                self.release()
                sup._update(phase="failed", last_failure=reason, verified=False,
                            failure_code=int(ExitCode.CONNECTION))
                return int(ExitCode.CONNECTION)
            restarts += 1
            # No backoff here: the master's supervisor paces the restarts of the master.
            sup._update(phase="reconnecting", verified=False, last_failure=reason,
                        restarts=restarts)

    @staticmethod
    def _fatal(error: SshwrapError) -> bool:
        from sshwrap.runtime.supervisor import is_fatal

        return is_fatal(error)

    def _attach(self, first: bool, wait: float) -> TunnelRecord:
        """The master up (started if need be), this tunnel's forwards added and verified."""
        if first:
            clash = conflicting_user(self.paths, self.name, self.key, self.forwards)
            if clash is not None:
                raise ForwardingFailed(
                    f"{self.name}: {clash[1]} is already forwarded by tunnel {clash[0]} on the "
                    "same shared connection", hint="choose another listen address or port")
        master = ensure_master(self.paths, self.profile, self.key, wait=wait,
                               secret=self.sup._secret)
        control = control_path(self.paths, self.key)
        self.added = True
        try:
            add_forwards(self.name, control, self.forwards, master.pid)
            verify_forwards(self.name, self.forwards, master.pid)
        except SshwrapError:
            cancel_forwards(control, self.forwards)
            self.added = False
            raise
        return master


# -- entry point of the master's supervisor -----------------------------------------------


def run_master(profile_name: str, key: str, *, wait: float, paths: StatePaths | None = None,
               store: ProfileStore | None = None, stdin: TextIO | None = None) -> int:
    from sshwrap.runtime.supervisor import read_secret
    from sshwrap.store import ProfileStore

    secret = read_secret(stdin)
    paths = paths or StatePaths.from_env()
    store = store or ProfileStore.from_option(None)
    try:
        profile = store.load(profile_name)
        if connection_key(profile) != key:
            raise InvalidInput(f"{profile_name}: its connection settings changed while a "
                               "shared connection was being started")
    except SshwrapError as error:
        sys.stderr.write(f"--- sshwrap shared connection {master_name(key)}: cannot start: "
                         f"{error.message}\n")
        return int(error.exit_code)
    return MasterSupervisor(profile, key, paths, wait, secret).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("profile")
    parser.add_argument("--key", required=True)
    parser.add_argument("--wait", type=float, default=MASTER_RESTART_WAIT)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.umask(0o077)
    return run_master(args.profile, args.key, wait=args.wait, stdin=sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
