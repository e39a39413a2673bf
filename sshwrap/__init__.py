"""sshwrap: declarative, named and verifiable SSH tunnels."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sshwrap.errors import (
    AuthFailed,
    ConnectionFailed,
    ExitCode,
    ForwardingFailed,
    InvalidInput,
    MissingBinary,
    NotReady,
    ProfileNotFound,
    SshwrapError,
)

if TYPE_CHECKING:
    from sshwrap.api.forwards import Dynamic, Local, OpenForward, Remote
    from sshwrap.api.managed import down, status, up
    from sshwrap.api.tunnel import Tunnel
    from sshwrap.runtime.results import (
        Action,
        DownReport,
        ForwardStatus,
        StatusReport,
        TunnelOutcome,
        TunnelState,
        TunnelStatus,
        UpReport,
    )

__version__ = "0.1.0"

# Loaded on first use: importing the pure core (sshwrap.core...) runs this file, and must
# not pull in the runtime with it.
_LAZY = {
    "sshwrap.api.forwards": ("Dynamic", "Local", "OpenForward", "Remote"),
    "sshwrap.api.managed": ("down", "status", "up"),
    "sshwrap.api.tunnel": ("Tunnel",),
    "sshwrap.runtime.results": ("Action", "DownReport", "ForwardStatus", "StatusReport",
                                "TunnelOutcome", "TunnelState", "TunnelStatus", "UpReport"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "Action", "AuthFailed", "ConnectionFailed", "DownReport", "Dynamic", "ExitCode",
    "ForwardStatus", "ForwardingFailed", "InvalidInput", "Local", "MissingBinary", "NotReady",
    "OpenForward", "ProfileNotFound", "Remote", "SshwrapError", "StatusReport", "Tunnel",
    "TunnelOutcome", "TunnelState", "TunnelStatus", "UpReport", "__version__", "down", "status",
    "up",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sshwrap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
