"""The engine started on demand: it takes its state dir's lock and socket, then serves until
idle (a unit runs it in the foreground instead: runtime/engine/foreground.py)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Mapping

from sshwrap.runtime.engine import daemon
from sshwrap.runtime.engine.daemon import lock_path, socket_path
from sshwrap.runtime.engine.resident import ResidentSupervisor
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.protocol import Served
from sshwrap.runtime.system.wire import listen_on


def main(commands: Mapping[str, Served] | None = None) -> int:
    """Serve the state dir of ``SSHWRAP_STATE_DIR`` until idle; ``commands`` are served
    besides the engine's own requests (registered by the composition root)."""
    from sshwrap.runtime.system.detach import log_output_to, released

    if not released():
        return 0  # the command that started it went without it: nothing was written
    with contextlib.suppress(OSError):
        os.umask(0o077)
    paths = StatePaths(StatePaths.from_env().root.absolute()).ensure()
    log_output_to(daemon.log_path(paths))
    # Hold no caller's directory: nothing here may depend on where the first up ran.
    os.chdir("/")
    lock_fd = paths.open(lock_path(paths), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another one serves this state dir
    listener = listen_on(socket_path(paths, create=True))
    engine = ResidentSupervisor(paths, commands)
    engine.lock_fd = lock_fd
    try:
        return engine.serve(listener)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path(paths).unlink()
        if engine.lock_fd is not None:
            os.close(engine.lock_fd)

