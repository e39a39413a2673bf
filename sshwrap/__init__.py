"""sshwrap: declarative, named and verifiable SSH tunnels."""

# Nothing is imported here until a name is used: the command line's express lane starts
# from this file and must stay light, and so must the pure core. The names and their types
# are declared in __init__.pyi.

__version__ = "0.1.0"

_LAZY = {
    "sshwrap.errors": ("AuthFailed", "ConnectionFailed", "ExitCode", "ForwardingFailed",
                       "InvalidInput", "MissingBinary", "NotReady", "ProfileNotFound",
                       "SshwrapError"),
    "sshwrap.api.forwards": ("Dynamic", "Local", "OpenForward", "Remote"),
    "sshwrap.api.managed": ("down", "status", "up"),
    "sshwrap.api.tunnel": ("Tunnel",),
    "sshwrap.runtime.observe.results": ("Action", "DownReport", "ForwardStatus", "StatusReport",
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


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sshwrap' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
