"""Text rendering of config sync, config remove and import results."""

from __future__ import annotations

from sshwrap.cli.render import message, table, to_text
from sshwrap.usecases.sshconfig import RemoveResult, SyncResult
from sshwrap.usecases.sshimport import ImportResult


@to_text.register
def _sync(value: SyncResult) -> str:
    lines: list[str] = []
    if value.dry_run:
        lines.extend(change.diff.rstrip("\n") for change in value.changes if change.changed)
        if not value.changed:
            lines.append("nothing would change")
    else:
        for change in value.changes:
            lines.append(f"{'updated  ' if change.changed else 'unchanged'} {change.path}")
        lines.append(f"synced {len(value.profiles)} profile(s): {', '.join(value.profiles)}")
    lines.extend(f"warning: {message(w)}" for w in value.warnings)
    return "\n".join(lines)


@to_text.register
def _remove(value: RemoveResult) -> str:
    lines = [
        f"{'restored ' if value.config_changed else 'unchanged'} {value.config}",
        f"{'deleted  ' if value.owned_removed else 'absent   '} {value.owned}",
    ]
    lines.extend(f"warning: {message(w)}" for w in value.warnings)
    return "\n".join(lines)


@to_text.register
def _import(value: ImportResult) -> str:
    parts: list[str] = []
    if value.imported:
        parts.append(table(["IMPORTED", "HOST", "FORWARDS", "FILE"],
                           [[i.name, i.host, "; ".join(i.forwards), i.path]
                            for i in value.imported]))
        parts.extend(f"note: {i.name}: {message(n)}" for i in value.imported for n in i.notes)
    if value.skipped:
        parts.append(table(["SKIPPED", "REASON"], [[s.host, s.reason] for s in value.skipped]))
    if not parts:
        parts.append(f"no Host entry with forwards in {value.config}")
    return "\n".join(parts)
