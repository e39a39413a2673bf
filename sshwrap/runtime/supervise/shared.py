"""Shared connections: one OpenSSH ControlMaster per destination, forwards added with ``-O``.

Tunnels that opt in (``share_connection = true`` or ``up --share``) and whose connection
settings are identical use one master connection. The master's supervisor
(runtime/supervise/masters.py: a thread of the engine, or a process of its own beside a foreground
supervisor) restarts the master when it dies and stops it once no tunnel uses it any more.
Each tunnel (runtime/supervise/sharedtunnel.py) adds its forwards to the master with ``ssh -O
forward``, watches the master, re-adds them after a restart, and removes them with ``ssh -O
cancel`` on ``down`` without touching the other tunnels on the master.

A shared tunnel's record names the master (``TunnelRecord.shared``) and carries the master's
pid, so that verification, ``status`` and ``ports`` see the master as the listener's owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sshwrap.core.compile import FORWARD_FLAG
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.model import Client, ForwardType, Profile
from sshwrap.core.unparse import profile_to_mapping
from sshwrap.errors import (
    ConnectionFailed,
    NotReady,
    SshwrapError,
    StateConflict,
)
from sshwrap.runtime.client.questions import ANSWER_TIMEOUT, PROMPT_ENV
from sshwrap.runtime.supervise.hosting import Hosting, users
from sshwrap.runtime.system import state
from sshwrap.runtime.system.detach import client_environment
from sshwrap.runtime.system.paths import STATE_DIR_ENV, StatePaths, judge_private_dir
from sshwrap.runtime.system.rendezvous import CONTROL_DIR, KEY_LENGTH, control_dir_fits
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord

if TYPE_CHECKING:
    from sshwrap.runtime.client.launch import Launched

#: Profile keys that do not change the connection itself: tunnels differing only in these
#: may share one master. Everything else (host, port, user, jump chain, ssh_config_file,
#: identity, options, host-key policy, auth, keepalive, compression) must be equal.
NOT_CONNECTION_KEYS = frozenset({"description", "tags", "forward", "restart", "share_connection"})
#: How often a tunnel's supervisor checks that its master still runs, and the master's
#: supervisor that some tunnel still uses it.
WATCH_INTERVAL = 0.2
USERS_INTERVAL = 1.0
POLL_INTERVAL = 0.02
#: How often the master's readiness is looked for: its tunnels all wait for it.
READY_POLL = 0.005
MUX_TIMEOUT = 10.0
#: A listener made by ``-O forward`` exists when the command returns; allow a scan race.
VERIFY_WAIT = 5.0
STOP_TIMEOUT = 5.0
#: How long a waiting tunnel gives a restarting master (beyond the master's own backoff).
MASTER_RESTART_WAIT = 60.0
LOCK_GRACE = 30.0


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
    return paths.inner_dir("shared")


def _private_dir(path: Path, *, create: bool) -> Path:
    """Create ``path`` 0700 (with ``create``), and accept it only if it is a real directory
    of this user that no one else can write (FileNotFoundError when absent)."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    info = os.lstat(path)
    judge_private_dir(path, info)
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def control_dir(paths: StatePaths, env: dict[str, str] | None = None, *,
                create: bool = True) -> Path:
    """The private (0700) directory of the control sockets; not made unless ``create``
    (FileNotFoundError then, when there is none).

    ``<state>/ctl`` when its socket paths are short enough (judged as every folder of the
    state dir is); otherwise a directory named after the state dir under
    ``$XDG_RUNTIME_DIR`` or the temp dir, the same for every process of this state dir.
    """
    preferred = paths.root / CONTROL_DIR
    if control_dir_fits(preferred):
        if create:
            return paths.folder(preferred)
        if paths.existing_folder(preferred) is None:
            raise FileNotFoundError(2, "No such file or directory", str(preferred))
        return preferred
    env = dict(os.environ) if env is None else env
    tag = hashlib.sha256(os.fsencode(paths.root.resolve())).hexdigest()[:8]
    bases = [Path(env["XDG_RUNTIME_DIR"])] if env.get("XDG_RUNTIME_DIR") else []
    import tempfile  # rarely needed: a state dir whose path is too long for a socket

    bases.append(Path(tempfile.gettempdir()))
    for base in bases:
        folder = base / f"sshwrap-{os.getuid()}-{tag}"
        if base.is_dir() and control_dir_fits(folder):
            return _private_dir(folder, create=create)
    raise StateConflict("no directory with a path short enough for a control socket",
                        hint="set TMPDIR to a short path such as /tmp")


def tidy_control_dir(paths: StatePaths) -> None:
    """As the engine exits, its tunnels stopped and its lock still held (no other engine
    binds meanwhile): the sockets killed clients left in the control folder go (nothing
    listens on them), and the folder too once empty when it lies outside the state dir."""
    from sshwrap.runtime.system.unixsock import clear_stale_socket

    with contextlib.suppress(OSError, SshwrapError):  # none made, or not empty: left as is
        folder = control_dir(paths, create=False)
        for entry in os.listdir(folder):
            with contextlib.suppress(SshwrapError):  # a live master's: it stays
                clear_stale_socket(folder / entry)
        if not folder.is_relative_to(paths.root):
            folder.rmdir()


def control_path(paths: StatePaths, key: str, *, create: bool = True) -> Path:
    """A master's control socket; without ``create`` (to remove or cancel), its folder is not
    made again (FileNotFoundError when it is gone)."""
    return control_dir(paths, create=create) / key


# -- talking to a master ------------------------------------------------------------------


def mux_argv(control: Path, command: str, args: Sequence[str] = ()) -> list[str]:
    """``ssh -S CONTROL -O COMMAND ...``: no config is read, nothing connects anywhere."""
    from sshwrap.runtime.client.launch import find_program

    return [find_program(Client.SSH), "-F", "/dev/null", "-o", "BatchMode=yes",
            "-S", str(control), "-O", command, *args, "--", "shared"]


def mux(control: Path, command: str, args: Sequence[str] = (), *,
        hosting: Hosting | None = None) -> subprocess.CompletedProcess[str]:
    """``ssh -O command`` on a master's control socket; in the engine (``hosting``), at most
    its mux slots at once."""
    with hosting.mux_slots if hosting is not None else contextlib.nullcontext():
        try:
            return subprocess.run(mux_argv(control, command, args), capture_output=True,
                                  text=True, timeout=MUX_TIMEOUT, stdin=subprocess.DEVNULL,
                                  check=False, env=client_environment())
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([], 255, "", f"ssh -O {command} timed out")


def forward_args(forward: ExpectedForward) -> list[str]:
    """The ``-L/-R/-D SPEC`` of one expanded forward, exactly as the compiler writes it
    (``listen`` and ``to`` are kept rendered in ssh's syntax)."""
    kind = ForwardType(forward.type)
    spec = forward.listen if kind is ForwardType.DYNAMIC or forward.to is None else \
        f"{forward.listen}:{forward.to}"
    return [FORWARD_FLAG[kind], spec]


def master_launch(profile: Profile, control: Path, log_path: Path,
                  ) -> tuple[Profile, LaunchSpec]:
    """The master: the profile's connection with no forwards, listening on ``control``;
    compiled at each start (runtime/client/auth.py prepared_launch)."""
    return replace(profile, forwards=()), LaunchSpec(log_path=str(log_path),
                                                      control_path=str(control))


@contextlib.contextmanager
def _try_lock(paths: StatePaths, name: str) -> Iterator[bool]:
    """The name's lock if free right now (True), else nothing held (False)."""
    fd = paths.ensure().open(paths.lock(name), os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _remove_socket(control: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        control.unlink()


def stop_master(paths: StatePaths, key: str, timeout: float = STOP_TIMEOUT,
                hosting: Hosting | None = None) -> None:
    """Stop the master of ``key`` and its supervisor (the caller holds the master's lock);
    ``hosting``: the engine's, when called in it.

    A master that the engine of another process supervises is that engine's to stop (it
    does once no tunnel uses it): the engine is never signalled from here."""
    from sshwrap.runtime.client.launch import stop_group, terminate_process
    from sshwrap.runtime.system.detach import is_engine

    mpaths = master_paths(paths)
    name = master_name(key)
    record = state.read_record(mpaths, name)
    if record is None:
        return
    supervisor = state.live_supervisor(record)
    if supervisor is not None and supervisor.pid == os.getpid():
        here = hosting.master(key) if hosting is not None and hosting.serves(paths) else None
        if here is not None:
            here.stop(timeout)
    elif supervisor is not None and is_engine(record.supervisor_argv):
        return
    elif supervisor is not None:
        terminate_process(supervisor.pid, timeout=timeout)  # a SIGKILL takes the master along
    latest = state.read_record(mpaths, name) or record
    if state.live_process(latest) is not None:
        stop_group(latest.pid, timeout=timeout)
    with contextlib.suppress(StateConflict, FileNotFoundError):
        _remove_socket(control_path(paths, key, create=False))
    state.remove_record(mpaths, name)


def cancel_forwards(control: Path, forwards: Sequence[ExpectedForward],
                    hosting: Hosting | None = None) -> None:
    """Remove forwards from a master (best effort: a dead master has none left)."""
    if not control.exists():
        return
    for forward in forwards:
        mux(control, "cancel", forward_args(forward), hosting=hosting)


def release(paths: StatePaths, record: TunnelRecord, *, timeout: float = STOP_TIMEOUT,
            cancel: bool = True, hosting: Hosting | None = None) -> None:
    """Take one tunnel off its master: cancel its forwards (unless ``cancel`` is False: it
    never added them), and stop the master when no other tunnel uses it. Safe to repeat.
    ``hosting``: the engine's, when called in it."""
    if record.shared is None:
        return
    key = record.shared
    mpaths = master_paths(paths)
    if cancel:
        with contextlib.suppress(StateConflict, FileNotFoundError):
            cancel_forwards(control_path(paths, key, create=False), record.forwards, hosting)
    with state.name_lock(mpaths, master_name(key), timeout=timeout + LOCK_GRACE):
        if not users(paths, key, besides=record.name, hosting=hosting):
            stop_master(paths, key, timeout, hosting)


# -- the master's supervisor --------------------------------------------------------------


def master_command(profile_name: str, key: str, *, wait: float) -> list[str]:
    from sshwrap.runtime.system.detach import own_command

    return own_command("master", profile_name, "--key", key, "--wait", f"{wait:g}")


def _master_error(record: TunnelRecord | None, who: str, log_path: Path) -> SshwrapError:
    """The error the master's supervisor recorded for a failed start, or a plain one."""
    failure = None if record is None else record.failure()
    if failure is not None:
        return failure
    return ConnectionFailed(f"{who}: the shared connection's supervisor ended before the "
                            "connection was up", hint=f"see {log_path}")


def ensure_master(paths: StatePaths, profile: Profile, key: str, *, wait: float,
                  secret: str | None = None, env: Mapping[str, str] | None = None,
                  hosting: Hosting | None = None) -> TunnelRecord:
    """The running, verified master of ``key``; started (with its supervisor) if need be,
    from ``env``, the environment of the ``up`` that asked (agent socket and all).

    The caller's own record (``shared = key``) must be written first: a master whose
    supervisor sees no tunnel using it stops. In the engine (``hosting``) the master is
    supervised in a thread of it.
    """
    if hosting is not None and not hosting.serves(paths):
        hosting = None
    here = hosting.master(key) if hosting is not None else None
    running = here.wait_up(wait) if here is not None else None
    if running is not None:  # started in a thread of this process: no lock to take in turns
        return running        # (fifty tunnels joining at once would queue there)
    mpaths = master_paths(paths).ensure()
    name = master_name(key)
    # The tunnel that starts the master holds the lock while a person answers its question.
    asking = ANSWER_TIMEOUT if (env or {}).get(PROMPT_ENV) else 0.0
    with state.name_lock(mpaths, name, timeout=wait + asking + LOCK_GRACE):
        record = state.read_record(mpaths, name)
        if record is not None and state.live_supervisor(record) is None:
            if record.phase == "failed":
                state.remove_record(mpaths, name)  # reported once; the next up starts afresh
                raise _master_error(record, profile.name, mpaths.log(name))
            if state.live_process(record) is not None:  # pragma: no cover - dies with it
                from sshwrap.runtime.client.launch import stop_group

                stop_group(record.pid, timeout=STOP_TIMEOUT)
            state.remove_record(mpaths, name)
            record = None
        supervisor_pid = None if record is None else record.supervisor_pid
        if record is None:
            supervisor_pid = hosting.start(paths, profile, key, wait, secret=secret, env=env) \
                if hosting is not None else _spawn_master_supervisor(
                    paths, profile, key, wait, secret=secret, base=env)
        here = hosting.master(key) if hosting is not None else None
        return _wait_master_up(mpaths, name, supervisor_pid, profile.name,
                               wait if record is None else MASTER_RESTART_WAIT,
                               paused=here.asking_time if here is not None else lambda: 0.0)


def wait_master_ready(launched: Launched, profile: Profile, control: Path, *, wait: float,
                      paused: Callable[[], float] = lambda: 0.0,
                      hosting: Hosting | None = None) -> None:
    """Until the master answers on its control socket (it listens once authenticated);
    the time ``paused`` tells a person took to answer its questions does not count."""
    from sshwrap.runtime.observe.verify import LogReader, failure_from_log

    deadline = time.monotonic() + wait
    reader = LogReader(launched.log_path, launched.log_offset)
    while True:
        if launched.popen.poll() is not None:
            raise failure_from_log(profile.name, reader.read(), profile)
        if control.exists() and mux(control, "check", hosting=hosting).returncode == 0:
            return
        if time.monotonic() >= deadline + paused():
            raise NotReady(f"{profile.name}: the shared connection was not ready after "
                           f"{wait:g} s", hint="raise --wait, or run 'sshwrap check'")
        time.sleep(READY_POLL)


def _spawn_master_supervisor(paths: StatePaths, profile: Profile, key: str, wait: float, *,
                             secret: str | None, base: Mapping[str, str] | None) -> int:
    from sshwrap.runtime.client.auth import client_env
    from sshwrap.runtime.system.detach import engine_environment, spawn_detached

    mpaths = master_paths(paths)
    # One of sshwrap's own processes, which starts an ssh client: what each of them keeps.
    env = {**engine_environment(os.environ if base is None else base),
           **client_env(profile, base=base), STATE_DIR_ENV: str(paths.root)}
    # Detached: the master outlives any one tunnel's supervisor; it stops by itself once no
    # live supervisor uses it.
    return spawn_detached(master_command(profile.name, key, wait=wait),
                          mpaths.log(master_name(key)), env, secret=secret).pid


def _wait_master_up(mpaths: StatePaths, name: str, supervisor_pid: int | None, who: str,
                    timeout: float, *, paused: Callable[[], float]) -> TunnelRecord:
    """Until the master's record is up (``timeout``, plus the time ``paused`` tells its
    start waited for a person's answers)."""
    from sshwrap.runtime.client.launch import process_gone

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
        if time.monotonic() >= deadline + paused():
            raise NotReady(f"{who}: the shared connection was not up within {timeout:g} s",
                           hint=f"see {mpaths.log(name)}")
        time.sleep(READY_POLL)
