"""The one check of a process's identity: sshwrap signals a process only once it passes."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

#: pid, create time and command line of a process, as records keep them
Identity = tuple[int, float, tuple[str, ...]]
#: psutil derives create_time from boot time and clock ticks; the same process always
#: gives the same value, a reused pid a different one.
CREATE_TIME_TOLERANCE = 0.01
CLIENT_PROGRAMS = frozenset({"ssh", "plink"})


def reap_if_child(pid: int) -> None:
    """Collect the exit status of our own dead child so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def own_identity() -> Identity:
    """This process's pid, create time and command line: what a record checks it by."""
    return _me()[0]


def _me() -> tuple[Identity, psutil.Process]:
    return _process(os.getpid())


# Memoisation of a per-process constant: a pid's create time and command line never change
# while it lives, and a forked child asks with its own pid.
@functools.cache
def _process(pid: int) -> tuple[Identity, psutil.Process]:
    """This process as psutil sees it, read once."""
    import psutil

    me = psutil.Process(pid)
    return (me.pid, me.create_time(), tuple(me.cmdline())), me


_memo = threading.local()


@contextlib.contextmanager
def memoized() -> Iterator[None]:
    """Within the block, in this thread, each identity is checked once: ``status`` of a
    hundred tunnels run by one engine asks about the engine a hundred times."""
    _memo.found = {}
    try:
        yield
    finally:
        del _memo.found


def identified(pid: int, create_time: float, argv: Sequence[str]) -> psutil.Process | None:
    """The process ``pid`` if it is still the one recorded: not a zombie, the same create
    time and command line (a record's client, or the engine's own command). Anything else
    is another (or a dead) process and must not be signalled."""
    found: dict[tuple[int, float, tuple[str, ...]], psutil.Process | None] | None = getattr(
        _memo, "found", None)
    if found is None:
        return _identified(pid, create_time, argv)
    key = (pid, create_time, tuple(argv))
    if key not in found:
        found[key] = _identified(pid, create_time, argv)
    return found[key]


def _identified(pid: int, create_time: float, argv: Sequence[str]) -> psutil.Process | None:
    import psutil

    if pid <= 0:  # no process recorded yet
        return None
    if pid == os.getpid():
        # This process (the engine, named in every record it supervises): running, and its
        # create time and command line were read once; nothing else can hold its pid now.
        (_pid, my_time, my_argv), me = _me()
        same = abs(my_time - create_time) <= CREATE_TIME_TOLERANCE and my_argv == tuple(argv)
        return me if same else None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            reap_if_child(pid)
            return None
        same = abs(proc.create_time() - create_time) <= CREATE_TIME_TOLERANCE \
            and _command_line(proc) == tuple(argv)
    except psutil.ZombieProcess:
        reap_if_child(pid)
        return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if same else None


#: How long a command line may read empty while its process is in the middle of exec.
EXEC_SETTLE = 0.05


def _command_line(proc: psutil.Process) -> tuple[str, ...]:
    """The command line of ``proc``. A process just started may read as having none: the
    kernel closes its close-on-exec descriptors (which tells the starter that exec worked)
    before it sets where the new arguments are. A few milliseconds settle it."""
    import time

    argv = tuple(proc.cmdline())
    deadline = time.monotonic() + EXEC_SETTLE
    while not argv and time.monotonic() < deadline:
        time.sleep(0.002)
        argv = tuple(proc.cmdline())
    return argv


def tunnel_clients(log_path: Path) -> list[psutil.Process]:
    """The running clients of a tunnel known only by its log (its record is damaged): ssh or
    plink processes of this user that lead their own process group (as sshwrap starts a
    client) and write to ``log_path`` (ssh's ``-E``, or their stderr)."""
    import psutil

    log = str(log_path)
    found = []
    for proc in psutil.process_iter(["name", "uids"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["name"] not in CLIENT_PROGRAMS or proc.info["uids"].real != os.getuid():
                continue
            argv = proc.cmdline()
            if not argv or Path(argv[0]).name not in CLIENT_PROGRAMS \
                    or os.getpgid(proc.pid) != proc.pid:
                continue
            if log in argv or os.readlink(f"/proc/{proc.pid}/fd/2") == log:
                found.append(proc)
    return found
