"""Runs one hook as a child subreaper, so that every process it starts, detached or not, ends
with it. Standalone (run as ``python -I -S hookrun.py PARENT PROGRAM ARGS...``): no import of
sshwrap, nothing read from the hook's environment.

Every process the hook leaves behind (``setsid``, a double fork) is re-parented to this one,
not to init: when the hook's program exits, or on SIGTERM (its timeout, its tunnel's down,
the engine's exit) or the engine's death, this kills what is left of the tree and reaps it.
Its exit status is the hook's (128 + the signal when the hook was killed).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
_ENDING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Ended(Exception):
    """Asked to end: by a signal, or the engine died (its parent-death signal)."""


def _on_signal(_signum: int, _frame: object) -> None:
    raise _Ended


def _descendants(root: int) -> list[int]:
    """Every process under ``root`` (a subreaper: none of its tree escapes to init)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, ())
    return found


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_tree() -> None:
    """SIGKILL every descendant, again until none is left (one may fork meanwhile)."""
    me = os.getpid()
    while True:
        left = _descendants(me)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not left:
            _reap()
            return
        try:
            os.waitpid(-1, 0)  # one at least ends: no busy loop
        except ChildProcessError:
            return
        _reap()


def main(argv: list[str]) -> int:
    parent, program, args = int(argv[1]), argv[2], argv[3:]
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        return 1  # the engine died before the death signal was set
    signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)
    for signum in _ENDING:
        signal.signal(signum, _on_signal)
    pid = os.fork()
    if pid == 0:
        for signum in _ENDING:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _ENDING)
        try:
            os.execv(program, [program, *args])  # noqa: S606 - an argv, never a shell line
        except OSError as error:
            os.write(2, f"cannot run {program}: {error.strerror}\n".encode())
        os._exit(127)
    # The hook's output pipe is held by the hook's processes only: it ends with them.
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    code = 128 + signal.SIGTERM
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _ENDING)
        while True:
            try:
                ended, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if ended == pid:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                break
    except _Ended:
        pass
    signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)
    end_tree()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
