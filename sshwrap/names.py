"""The one check of a NAME given on the command line: a profile name, or a .toml file's path."""

from __future__ import annotations

from sshwrap.core.syntax import PROFILE_NAME_RE
from sshwrap.errors import InvalidInput, Problem
from sshwrap.textsafe import shown


def checked_name(value: str, *, file_ok: bool = False) -> str:
    """``value`` if it is a profile name (or, with ``file_ok``, a path to a .toml file);
    InvalidInput (exit 2) otherwise, before anything is read, written or started.

    Every command's NAME goes through here: a name becomes a file name under the profile and
    state directories, so ``../../etc/x`` must never reach them.
    """
    if PROFILE_NAME_RE.fullmatch(value) or (file_ok and value.endswith(".toml")):
        return value
    what = "a profile name or a path to a .toml file" if file_ok else "a profile name"
    raise InvalidInput(Problem(
        f"{shown(value)} is not {what} (1 to 64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit)", key="NAME"))
