"""Where the runtime keeps its state: tunnel records, client logs and per-name locks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sshwrap.runtime.rendezvous import STATE_DIR_ENV, state_root

__all__ = ["STATE_DIR_ENV", "StatePaths", "default_state_dir"]


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """``SSHWRAP_STATE_DIR`` if set, else ``$XDG_STATE_HOME/sshwrap`` (~/.local/state/sshwrap)."""
    return Path(state_root(os.environ if env is None else env))


@dataclass(frozen=True)
class StatePaths:
    """The state directory and the files inside it; ``ensure()`` creates them private (0700)."""

    root: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StatePaths:
        return cls(default_state_dir(env))

    @property
    def tunnels(self) -> Path:
        return self.root / "tunnels"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def record(self, name: str) -> Path:
        return self.tunnels / f"{name}.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def lock(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    def ensure(self) -> StatePaths:
        """Create the folders owner-only: logs and records reveal hosts, users and ports."""
        for folder in (self.root, self.tunnels, self.logs, self.locks):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)
        return self
