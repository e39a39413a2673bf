"""Which profiles a command acts on, and its --wait: checked before anything is done, and
light enough for the express lane to check before it starts an engine."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

from sshwrap.core import syntax
from sshwrap.core.model import Profile
from sshwrap.errors import InvalidInput, Problem, ProfileNotFound
from sshwrap.store import ProfileStore

__all__ = ["MAX_WAIT", "check_known", "check_names", "check_wait", "select_profiles"]

#: The longest --wait taken: a day (beyond it a deadline is no deadline).
MAX_WAIT = 86400.0


def check_wait(wait: float) -> float:
    """``--wait`` as given, if it is a usable number of seconds; InvalidInput if not."""
    if not math.isfinite(wait) or wait <= 0 or wait > MAX_WAIT:
        raise InvalidInput(Problem(f"must be a number of seconds above 0 and at most "
                                   f"{MAX_WAIT:g}, not {wait!r}", key="--wait"))
    return wait


def select_profiles(store: ProfileStore, names: Sequence[str], *, all_profiles: bool = False,
                    tag: str | None = None) -> list[Profile]:
    """The profiles a command acts on; InvalidInput (nothing done) if any is missing or bad."""
    if not names and not all_profiles and tag is None:
        raise InvalidInput("name at least one profile, or pass --all or --tag TAG")
    if names:
        return store.load_many(dict.fromkeys(names))
    profiles, problems = store.load_all()
    if problems:
        raise InvalidInput(problems, hint="fix or remove these profiles, or name the ones to use")
    if tag is not None:
        profiles = [p for p in profiles if tag in p.tags]
        if not profiles:
            raise InvalidInput(f"--tag: no profile has the tag {tag!r}")
    return profiles


def check_names(names: Iterable[str]) -> list[str]:
    bad = [n for n in names if not syntax.PROFILE_NAME_RE.fullmatch(n)]
    if bad:
        raise InvalidInput([Problem(f"{n!r} is not a tunnel name", key="NAME") for n in bad])
    return list(dict.fromkeys(names))


def check_known(names: Iterable[str], known: Collection[str],
                recorded: Collection[str]) -> list[str]:
    """``names``, each a profile (``known``) or a tunnel's record (``recorded``);
    ProfileNotFound naming every other one, so that nothing waits for a mistyped name."""
    targets = check_names(names)
    unknown = [n for n in targets if n not in known and n not in recorded]
    if unknown:
        raise ProfileNotFound(
            [Problem(f"no profile or running tunnel named {n!r}", file=n) for n in unknown],
            hint="see 'sshwrap list'")
    return targets
