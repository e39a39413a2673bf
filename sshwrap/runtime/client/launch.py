"""Start one client process (ssh or plink) for a profile, detached, logging to a file; stop it."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.model import Client, Profile
from sshwrap.errors import InvalidInput, MissingBinary, Problem
from sshwrap.fsutil import check_handed_file
from sshwrap.runtime.system.identity import reap_if_child

INSTALL_HINT = {
    "ssh": "install OpenSSH's client: apt-get install openssh-client",
    "plink": "install PuTTY's tools: apt-get install putty-tools",
}


@dataclass
class Launched:
    """A started client: its process (ours until this sshwrap exits) and where it logs."""

    popen: subprocess.Popen[bytes]
    pid: int
    create_time: float
    argv: tuple[str, ...]
    log_path: Path
    log_offset: int  # where this run's lines start in the (appended) log


#: How long a program found on PATH is taken as there without looking again: ``status``
#: compiles every tunnel's command line, and PATH does not change within a second.
WHICH_TTL = 1.0


def find_program(client: Client) -> str:
    found = _which(client.value, os.environ.get("PATH", os.defpath),
                   int(time.monotonic() // WHICH_TTL))
    if not found:
        raise MissingBinary(f"{client.value} is not installed", hint=INSTALL_HINT[client.value])
    return found


# Memoisation: a program's place on a PATH is taken as a constant within one WHICH_TTL tick.
@functools.lru_cache(maxsize=16)
def _which(program: str, path: str, _tick: int) -> str | None:
    return shutil.which(program, path=path)


#: The profile's keys naming files that ssh (or plink) opens itself.
HANDED_FILES = ("ssh_config_file", "identity_file")


def check_profile_files(profile: Profile) -> None:
    """The profile's files ssh is given, each a regular file (or absent, or /dev/null):
    checked before every ssh that reads them (fsutil.check_handed_file)."""
    for key in HANDED_FILES:
        value = getattr(profile, key)
        if value:
            check_handed_file(value, key=key, file=profile.source or profile.name)


def launch_argv(profile: Profile, facts: HostFacts, spec: LaunchSpec | None = None,
                ) -> list[str]:
    """The profile's client command, compiled in one pass by the core compilers: with
    ``spec``, all that one start runs (see runtime/client/auth.py prepared_launch); without one,
    what ``sshwrap compile`` shows, which is how ``up`` checks that a profile can start."""
    program = find_program(profile.client)
    check_profile_files(profile)
    try:
        if profile.client is Client.PLINK:
            from sshwrap.core.compile.plink import compile_plink

            return compile_plink(profile, facts, program=program, spec=spec)
        from sshwrap.core.compile.ssh import compile_ssh

        return compile_ssh(profile, facts, program=program, spec=spec)
    except NotExpressible as exc:
        raise InvalidInput(Problem(f"{exc.message} ({exc.target} cannot express it)",
                                   key=exc.key, file=profile.source or profile.name)) from None


# -- the per-tunnel client config: options for every hop ---------------------------------

#: ssh reads this when it is given no -F (and skips it when it is).
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
#: ssh's own per-user config; ssh expands the ``~`` itself, with its idea of home.
USER_SSH_CONFIG = "~/.ssh/config"
#: What a path may hold to appear, unquoted, in the command ssh builds for a ProxyJump hop
#: (``ssh ... -F PATH ...``, run by the shell after %-token expansion).
PROXY_SAFE_PATH = re.compile(r"[A-Za-z0-9._/+@,=:-]+")
#: Characters an Include path cannot hold: quoting breakers, glob and token syntax.
UNSAFE_INCLUDE = frozenset('"\\\r\n\0*?[]%$')


def client_config_path(state_root: Path, name: str) -> Path:
    return state_root / "client" / f"{name}.conf"


def _include_line(path: str, profile: Profile, key: str) -> str:
    if any(ch in UNSAFE_INCLUDE for ch in path):
        raise InvalidInput(Problem(f"{path!r} cannot be included in an ssh config safely",
                                   key=key, file=profile.source or profile.name))
    return f'Include "{path}"'


def client_config_text(profile: Profile, options: Sequence[tuple[str, str]]) -> str:
    """The client config for every hop: sshwrap's ``options`` at top level, then the config
    ssh would have read without it.

    ssh hands a ProxyJump child ``-F`` but none of the ``-o`` options, and the first value
    of an option wins, so options placed before any Host or Match block reach every hop.
    The profile's ``ssh_config_file`` replaces the user's and the system config (as with
    ``ssh -F``); without it both are included, as ssh reads them when given no ``-F``.
    """
    lines = [f"# sshwrap: client config of tunnel {profile.name}; regenerated at every start"]
    for name, value in options:
        if not re.fullmatch(r"[A-Za-z]+", name) or not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError(f"not an option sshwrap sets: {name}={value}")
        lines.append(f"{name} {value}")
    if profile.ssh_config_file:
        config = os.path.abspath(os.path.expanduser(profile.ssh_config_file))
        lines.append(_include_line(config, profile, "ssh_config_file"))
    else:
        lines.append(_include_line(USER_SSH_CONFIG, profile, "ssh_config_file"))
        lines.append(_include_line(SYSTEM_SSH_CONFIG, profile, "ssh_config_file"))
    return "\n".join(lines) + "\n"


def write_client_config(profile: Profile, state_root: Path,
                        options: Sequence[tuple[str, str]]) -> Path:
    """Write ``<state>/client/NAME.conf`` (0600, atomically) and return its path."""
    from sshwrap.runtime.system.paths import StatePaths

    path = client_config_path(state_root, profile.name)
    if profile.jump and not PROXY_SAFE_PATH.fullmatch(str(path)):
        raise InvalidInput(Problem(
            f"the state directory {str(state_root)!r} holds characters ssh cannot pass to a "
            "jump host's command", key="SSHWRAP_STATE_DIR"),
            hint="point SSHWRAP_STATE_DIR at a path of letters, digits and ._/+@,=:-")
    # Written again before every start of the client: nothing of it need outlive a power cut.
    StatePaths(state_root).write(path, client_config_text(profile, options).encode(),
                                 durable=False)
    return path


#: prctl(2) option: the signal the kernel sends a process when its parent dies.
PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent: a forked child of a threaded process must
    not take the dynamic loader's lock, which another thread may have held at the fork."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def die_with_parent(parent: int, prctl: Callable[..., int] | None) -> None:
    """In a forked child before exec: have the kernel SIGKILL it when its parent dies.

    A supervised client must never outlive its supervisor (``kill -9`` of the supervisor
    would otherwise leave an ssh nobody owns). Linux only; elsewhere this is a no-op and
    ``down`` still stops the client by its recorded identity. The death signal follows the
    parent *thread* that forked, so a client is spawned by the thread that supervises it
    for its whole life.
    """
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


#: prctl(2) option: whether the process may dump core, and be read (ptrace, /proc/PID/mem
#: and environ) by other processes of its user.
PR_SET_DUMPABLE = 4


def keep_memory_private() -> None:
    """Give this process, which holds passwords in memory, no core file and make it
    non-dumpable: no core dump, no ptrace, no /proc/PID/mem or environ for the user's other
    processes.

    Its /proc/PID files then belong to root, and those that need ptrace access (environ,
    fd/, mem, exe) are closed to the user's other processes; stat, status and cmdline stay
    readable, which is all an identity check (runtime/system/identity.py) or ``ps`` reads. A
    program it starts is dumpable again from its exec, and inherits the core limit of 0.
    Linux only for the dumpable flag; the core limit wherever there is one.
    """
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def spawn(name: str, argv: list[str], log_path: Path, *,
          owned_by_parent: bool = False, env: Mapping[str, str] | None = None,
          pass_fds: Sequence[int] = ()) -> Launched:
    """Start ``argv`` in its own session with stdin from /dev/null and output to ``log_path``.

    Nothing is read from a pipe: with ProxyJump the jump child keeps inherited descriptors
    open for the tunnel's whole life, so a pipe would never reach EOF. ``owned_by_parent``
    makes the client die with this process (see ``die_with_parent``): the supervisor's case.
    """
    import psutil

    from sshwrap.runtime.system.paths import open_private

    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Opened first here, as a file of ours and never through a symlink, so that the ssh
    # given it with -E appends to that file (its folder is judged by the caller's StatePaths).
    fd = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"--- sshwrap: starting {name} at {stamp} ---\n".encode())
        log.flush()
        from sshwrap.runtime.system.logs import end_offset

        offset = end_offset(log_path)  # logical: the engine may have cut the log's start
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True,
                                 preexec_fn=functools.partial(die_with_parent, os.getpid(),  # noqa: PLW1509
                                                              _prctl())
                                 if owned_by_parent else None,
                                 # env: see auth.client_env; pass_fds: plink's password pipe
                                 env=None if env is None else dict(env), pass_fds=tuple(pass_fds))
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        create_time = 0.0  # it died at once; verification reports why from the log
    return Launched(popen, popen.pid, create_time, tuple(argv), log_path, offset)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs; a zombie counts as gone (and is reaped if ours)."""
    import psutil

    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False
    reap_if_child(pid)
    return True


def terminate_process(pid: int, *, timeout: float) -> bool:
    """SIGTERM a supervisor process (it stops its client and exits 0), SIGKILL it after
    ``timeout`` (the kernel then ends its client too: parent-death signal). True if it
    ended on SIGTERM. The caller has checked the pid's identity, as for ``stop_group``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if process_gone(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def stop_group(pid: int, *, timeout: float = 5.0) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout``.

    SIGTERM is repeated every half second: OpenSSH 9.2 now and then loses a SIGTERM that
    arrives while it is closing a channel, and a second one is honoured.
    The caller must have checked that ``pid`` is a process sshwrap started (see
    ``state.live_process``): this signals without asking. True if the leader is gone.
    """
    deadline = time.monotonic() + timeout
    next_term = 0.0
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        if time.monotonic() >= next_term:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            next_term = time.monotonic() + 0.5
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + timeout
    while time.monotonic() < kill_deadline:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)
