"""``python -m sshwrap``: the command line, or (``--engine``) one of sshwrap's own processes."""

import sys


def own_process(args: list[str]) -> int:
    """The one dispatcher of the processes sshwrap starts of itself (runtime/detach.py), and
    the composition root of the engine: the commands it serves are registered here, so that
    nothing under runtime/ knows the command line."""
    mode, rest = (args[0], args[1:]) if args else ("", [])
    if mode == "master":
        from sshwrap.runtime.masters import main as master

        return master(rest)
    if mode:
        sys.stderr.write(f"sshwrap: error: unknown process mode {mode!r}\n")
        return 2
    from sshwrap.cli.express import COMMANDS as EXPRESS
    from sshwrap.runtime.engine import main as engine
    from sshwrap.runtime.served import COMMANDS as SERVED

    return engine({**SERVED, **EXPRESS})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--engine"]:
        sys.exit(own_process(sys.argv[2:]))
    from sshwrap.cli.express import main

    main()
