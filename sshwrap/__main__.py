"""``python -m sshwrap``: the command line, or (``--engine``) one of sshwrap's own processes."""

import sys


def own_process(args: list[str]) -> int:
    """The one dispatcher of the processes sshwrap starts of itself (runtime/system/detach.py) or a
    service manager starts (a systemd unit, a launchd agent), and the composition root of
    the engine: the commands it serves are registered here, so that nothing under runtime/
    knows the command line.

    ``--engine``: the engine, detached, until idle; ``--engine --foreground --up NAME ...``:
    the same engine in the foreground (runtime/engine/foreground.py); ``--engine master ...``: a
    shared connection's master alone.
    """
    from sshwrap.runtime.client.launch import keep_memory_private

    keep_memory_private()  # each of them may be handed passwords (an engine, a master)
    mode, rest = (args[0], args[1:]) if args else ("", [])
    if mode == "master":
        from sshwrap.runtime.supervise.masters import main as master

        return master(rest)
    from sshwrap.runtime.system.detach import FOREGROUND_MARK

    if mode and mode != FOREGROUND_MARK:
        sys.stderr.write(f"sshwrap: error: unknown process mode {mode!r}\n")
        return 2
    from sshwrap.usecases.served import COMMANDS as commands

    if mode == FOREGROUND_MARK:
        from sshwrap.runtime.engine.foreground import run as foreground

        return foreground(rest, commands)
    from sshwrap.runtime.engine.detached import main as engine

    return engine(commands)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--engine"]:
        sys.exit(own_process(sys.argv[2:]))
    from sshwrap.cli.express import main

    main()
