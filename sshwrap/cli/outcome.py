"""The one way an error or a Ctrl-C ends a command: the words for stderr and the exit code,
whichever front end (the full command line, the express lane, the engine serving it) ran it."""

from __future__ import annotations

from sshwrap.errors import ExitCode, SshwrapError

#: A command stopped by Ctrl-C ends as a shell's would: 128 + SIGINT.
INTERRUPTED = 130


def failure(error: BaseException) -> tuple[str, int]:
    """What stderr says of ``error`` and the exit code the command ends with: a documented
    one for sshwrap's own errors, 130 for Ctrl-C, and 1 with one line for anything else
    (the traceback only with --debug)."""
    from sshwrap.cli.render import error_text, internal_error_text

    if isinstance(error, KeyboardInterrupt):
        return "sshwrap: interrupted\n", INTERRUPTED
    if isinstance(error, SshwrapError):
        return error_text(error), int(error.exit_code)
    return internal_error_text(error), int(ExitCode.INTERNAL)


def report(error: BaseException) -> int:
    """Write ``failure(error)``'s words to stderr; its exit code."""
    import sys

    text, code = failure(error)
    sys.stderr.write(text)
    sys.stderr.flush()
    return code
