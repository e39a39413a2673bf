"""Errors as data: what crosses the engine's socket or a record is raised again as itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sshwrap import errors
from sshwrap.errors import ExitCode, InvalidInput, Problem, SshwrapError

#: Every error kind by name, so that the other side raises the very class that was raised.
KINDS: dict[str, type[SshwrapError]] = {
    cls.__name__: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, SshwrapError)
}
#: The kind a bare exit code stands for, when no kind was written (records of older sshwraps).
KIND_OF_CODE: dict[int, type[SshwrapError]] = {
    int(ExitCode.BAD_INPUT): errors.InvalidInput,
    int(ExitCode.MISSING_BINARY): errors.MissingBinary,
    int(ExitCode.AUTH): errors.AuthFailed, int(ExitCode.FORWARDING): errors.ForwardingFailed,
    int(ExitCode.CONNECTION): errors.ConnectionFailed, int(ExitCode.NOT_READY): errors.NotReady,
    int(ExitCode.UNHEALTHY): errors.Unhealthy,
}


def error_data(error: SshwrapError) -> dict[str, Any]:
    """An error as plain JSON values: kind, exit code, message, hint (and each problem)."""
    data: dict[str, Any] = {"kind": type(error).__name__, "exit_code": int(error.exit_code),
                            "message": error.message, "hint": error.hint}
    if isinstance(error, InvalidInput):
        data["problems"] = [vars(p) for p in error.problems]
    return data


def error_from_data(data: Mapping[str, Any]) -> SshwrapError:
    """The error ``error_data`` described, of the same class; an unknown kind falls back on
    the class of its exit code, so the code and the words are kept either way."""
    code = int(data.get("exit_code", ExitCode.INTERNAL))
    kind = KINDS.get(str(data.get("kind"))) or KIND_OF_CODE.get(code, SshwrapError)
    message, hint = str(data.get("message", "")), str(data.get("hint") or "")
    if issubclass(kind, InvalidInput):
        problems = [Problem(str(p.get("message", "")), key=str(p.get("key", "")),
                            file=str(p.get("file", "")))
                    for p in data.get("problems") or () if isinstance(p, Mapping)]
        return kind(problems or message, hint=hint)
    return kind(message, hint=hint)
