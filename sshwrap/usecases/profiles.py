"""Use cases over profile files: list, validate, compile, add."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile import NotExpressible
from sshwrap.core.compile.values import refuse_free_ports
from sshwrap.core.model import Profile
from sshwrap.errors import InvalidInput, Problem
from sshwrap.machine import host_facts
from sshwrap.store import ProfileStore, load_profile_file
from sshwrap.textsafe import shown_key


class Target(StrEnum):
    SSH = "ssh"
    PLINK = "plink"
    CONFIG = "config"
    SYSTEMD = "systemd"
    LAUNCHD = "launchd"


@dataclass(frozen=True)
class ProfileEntry:
    name: str
    path: str
    host: str
    jump: tuple[str, ...]
    client: str
    forwards: tuple[str, ...]
    tags: tuple[str, ...]
    description: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfileList:
    dirs: tuple[str, ...]
    entries: tuple[ProfileEntry, ...]


@dataclass(frozen=True)
class ValidationResult:
    target: str
    ok: bool
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ValidationReport:
    results: tuple[ValidationResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


@dataclass(frozen=True)
class Compiled:
    name: str
    target: Target
    argv: tuple[str, ...] | None  # for ssh and plink
    text: str  # what a person copies: the shell command, or the config block / unit

    def to_json(self) -> object:
        return {"name": self.name, "target": self.target.value,
                "argv": list(self.argv) if self.argv is not None else None, "text": self.text}




def _entry(profile: Profile, path: Path) -> ProfileEntry:
    return ProfileEntry(
        name=profile.name, path=shown_key(str(path)), host=profile.host,
        jump=tuple(h.render() for h in profile.jump), client=profile.client.value,
        forwards=tuple(f.describe() for f in profile.forwards), tags=profile.tags,
        description=profile.description,
    )


def list_profiles(store: ProfileStore) -> ProfileList:
    entries = []
    for name, path in store.paths().items():
        try:
            entries.append(_entry(load_profile_file(path), path))
        except InvalidInput as exc:
            # The file's name is not checked yet: it is shown with its characters escaped.
            entries.append(ProfileEntry(
                name=shown_key(name), path=shown_key(str(path)), host="", jump=(), client="",
                forwards=(), tags=(),
                description="", problems=tuple(exc.lines()),
            ))
    return ProfileList(dirs=tuple(str(d) for d in store.dirs), entries=tuple(entries))


def validate(store: ProfileStore, targets: list[str]) -> ValidationReport:
    """Validate the named profiles or files (all profiles when none is named)."""
    paths = [store.find(t) for t in targets] if targets else list(store.paths().values())
    results = []
    for path in paths:
        try:
            profile = load_profile_file(path)
            problems = [str(Problem(p, file=str(path))) for p in compile_problems(profile)]
        except InvalidInput as exc:
            problems = exc.lines()
        results.append(ValidationResult(shown_key(str(path)), not problems, tuple(problems)))
    return ValidationReport(tuple(results))


def compile_problems(profile: Profile) -> list[str]:
    """What the compiler of the profile's own client refuses: for plink, what plink cannot
    express; for ssh nothing, as its compiler checks values with the parser's own checkers
    (run here all the same, so that ``validate`` never passes what ``up`` refuses)."""
    from sshwrap.core.compile.plink import compile_plink
    from sshwrap.core.compile.ssh import compile_ssh

    compile_for = compile_plink if profile.client.value == "plink" else compile_ssh
    try:
        compile_for(profile, HostFacts())
    except NotExpressible as exc:
        return [str(exc)]
    return []


def compile_profile(store: ProfileStore, name: str, target: Target) -> Compiled:
    profile = store.load(name)
    facts = host_facts()
    try:
        if target in (Target.SSH, Target.PLINK):
            # The runtime compiles such a profile with the ports it chose; printed for a
            # person to run, port 0 would be refused by ssh or report no port.
            refuse_free_ports(profile, target.value)
        if target is Target.SSH:
            from sshwrap.core.compile.ssh import compile_ssh

            argv = compile_ssh(profile, facts)
            return Compiled(profile.name, target, tuple(argv), shlex.join(argv))
        if target is Target.PLINK:
            from sshwrap.core.compile.plink import compile_plink

            argv = compile_plink(profile, facts)
            return Compiled(profile.name, target, tuple(argv), shlex.join(argv))
        if target is Target.CONFIG:
            from sshwrap.core.compile.config import compile_config

            return Compiled(profile.name, target, None, compile_config(profile, facts))
        if target is Target.LAUNCHD:
            return Compiled(profile.name, target, None, _launch_agent(store, profile))
        from sshwrap.usecases.service import render_unit

        return Compiled(profile.name, target, None, render_unit(store, name))
    except NotExpressible as exc:
        raise InvalidInput(
            Problem(exc.message + f" ({exc.target} cannot express it)", key=exc.key,
                    file=profile.source or profile.name)
        ) from None


def _launch_agent(store: ProfileStore, profile: Profile) -> str:
    import sys

    from sshwrap.core.compile.launchd import compile_launchd
    from sshwrap.usecases.service import unit_environment

    try:
        return compile_launchd(profile, python=sys.executable,
                               environment=unit_environment(store))
    except NotExpressible:
        raise
    except ValueError as exc:  # a value XML cannot carry (a control character)
        raise InvalidInput(Problem(str(exc), file=profile.source or profile.name)) from None


@dataclass(frozen=True)
class AddRequest:
    """What ``sshwrap add`` was given: flags, and optionally a pasted ssh command line.

    Flags take precedence over the same setting in the ssh command line; forwards from
    both are kept (the command line's first).
    """

    name: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    jump: tuple[str, ...] = ()
    local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()
    dynamic: tuple[str, ...] = ()
    identity_file: str | None = None
    compression: bool = False
    tags: tuple[str, ...] = ()
    description: str | None = None
    client: str | None = None
    ssh_command: tuple[str, ...] = ()


@dataclass(frozen=True)
class AddResult:
    name: str
    path: str | None  # None for a dry run
    toml: str
    written: bool


def _flag_forwards(request: AddRequest) -> list[dict[str, Any]]:
    from sshwrap.core.sshcmd import parse_forward_spec
    from sshwrap.core.syntax import SyntaxProblem

    forwards: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for flag, specs in (("-L", request.local), ("-R", request.remote), ("-D", request.dynamic)):
        for spec in specs:
            try:
                forwards.append(parse_forward_spec(flag, spec))
            except SyntaxProblem as exc:
                problems.append(Problem(str(exc), key=f"{flag} {spec}", file="command line"))
    if problems:
        raise InvalidInput(problems)
    return forwards


def profile_mapping_for(request: AddRequest) -> dict[str, Any]:
    """The raw profile mapping ``request`` describes (validated later by parse_profile)."""
    from sshwrap.core.sshcmd import parse_ssh_command

    mapping: dict[str, Any] = (
        parse_ssh_command(request.ssh_command) if request.ssh_command else {"forward": []}
    )
    flags: dict[str, Any] = {
        "host": request.host,
        "user": request.user,
        "port": request.port,
        "identity_file": request.identity_file,
        "description": request.description,
        "client": request.client,
        "jump": list(request.jump) or None,
        "tags": list(request.tags) or None,
        "compression": True if request.compression else None,
    }
    mapping.update({key: value for key, value in flags.items() if value is not None})
    mapping["forward"] = [*mapping.get("forward", []), *_flag_forwards(request)]
    return mapping


def add_profile(
    store: ProfileStore, request: AddRequest, *, force: bool = False, dry_run: bool = False
) -> AddResult:
    """Validate the new profile and write it atomically into the first profile directory.

    Nothing is written when anything is invalid, when a profile of that name exists and
    ``force`` is not set, or on a dry run (which returns the TOML it would write).
    """
    from sshwrap.core.parse import parse_profile
    from sshwrap.store import render_profile

    profile = parse_profile(request.name, profile_mapping_for(request))
    toml = render_profile(profile)
    if dry_run:
        return AddResult(profile.name, None, toml, written=False)
    path = store.write(profile, force=force)
    return AddResult(profile.name, str(path), toml, written=True)
