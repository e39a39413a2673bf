"""The error hierarchy: every failure sshwrap reports has a kind, and every kind an exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from sshwrap.textsafe import shown_key


class ExitCode(IntEnum):
    """Stable exit codes, the same for every command (documented in the README)."""

    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    MISSING_BINARY = 3
    AUTH = 4
    FORWARDING = 5
    CONNECTION = 6
    NOT_READY = 7
    UNHEALTHY = 8
    STATE = 9


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is (file, key path) and what is wrong."""

    message: str
    key: str = ""
    file: str = ""

    def __str__(self) -> str:
        where = ": ".join(part for part in (shown_key(self.file), shown_key(self.key)) if part)
        return f"{where}: {self.message}" if where else self.message


class SshwrapError(Exception):
    """Base class of every error the CLI turns into a message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The error as the lines the CLI prints after ``sshwrap: error: ``."""
        return [self.message]


class InvalidInput(SshwrapError):
    """A profile, a flag or a file is invalid; every problem found is carried at once."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problems: list[Problem] | Problem | str, *, hint: str = "") -> None:
        if isinstance(problems, str):
            problems = Problem(problems)
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems), hint=hint)

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class ProfileNotFound(InvalidInput):
    """No profile of that name exists in the profile directories."""


def gathered(errors: Sequence[InvalidInput], *, hint: str = "") -> InvalidInput:
    """The problems of several errors as one, raised where many names are resolved at once:
    a ProfileNotFound (with its hint) when any of them is one, so that ``up("a", "nope")``
    fails as ``Tunnel.from_profile("nope")`` does."""
    problems = [p for error in errors for p in error.problems]
    missing = [e for e in errors if isinstance(e, ProfileNotFound)]
    if missing:
        return ProfileNotFound(problems, hint=hint or next((e.hint for e in missing if e.hint),
                                                           ""))
    return InvalidInput(problems, hint=hint)


class MissingBinary(SshwrapError):
    """A program sshwrap drives (ssh, plink, sshd, systemctl) is not installed."""

    exit_code = ExitCode.MISSING_BINARY


class AuthFailed(SshwrapError):
    """Authentication failed, or a host key is unknown or changed."""

    exit_code = ExitCode.AUTH


class ForwardingFailed(SshwrapError):
    """A forward could not be set up: a port is taken locally or refused by the server."""

    exit_code = ExitCode.FORWARDING


class ConnectionFailed(SshwrapError):
    """A hop could not be reached: name does not resolve, refused, timed out, unreachable."""

    exit_code = ExitCode.CONNECTION


class NotReady(SshwrapError):
    """The tunnel did not pass verification before the deadline."""

    exit_code = ExitCode.NOT_READY


class Unhealthy(SshwrapError):
    """status/check found something down or unhealthy."""

    exit_code = ExitCode.UNHEALTHY


class StateConflict(SshwrapError):
    """A file changed under us, or another sshwrap holds the lock for too long."""

    exit_code = ExitCode.INTERNAL


class StateUnusable(SshwrapError):
    """The state directory cannot be written (read-only, full) or holds a damaged record."""

    exit_code = ExitCode.STATE
