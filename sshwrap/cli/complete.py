"""Shell completion of profile names and tags, read from the profile directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _store(ctx: Any) -> Any:
    from sshwrap.store import ProfileStore

    dirs = getattr(ctx, "params", {}).get("profiles") if ctx is not None else None
    return ProfileStore.from_option([Path(d) for d in dirs] if dirs else None)


def profile_names(ctx: Any, incomplete: str) -> list[str]:
    """Profile names starting with ``incomplete``, from the file names alone (no parsing),
    so that a tab press stays instant with many profiles; an unreadable directory offers none."""
    try:
        names = _store(ctx).paths()
    except Exception:  # completion must never print a traceback into the shell
        return []
    return sorted(n for n in names if n.startswith(incomplete))


def profile_tags(ctx: Any, incomplete: str) -> list[str]:
    """Tags of every valid profile starting with ``incomplete``."""
    try:
        profiles, _problems = _store(ctx).load_all()
    except Exception:  # completion must never print a traceback into the shell
        return []
    tags = {tag for profile in profiles for tag in profile.tags}
    return sorted(t for t in tags if t.startswith(incomplete))
