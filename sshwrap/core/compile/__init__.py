"""Compilers from a validated Profile to client argv, ssh_config blocks and service units."""

from __future__ import annotations

from sshwrap.core.model import Forward, ForwardType, HostKeyMode, Profile


class NotExpressible(ValueError):
    """The target cannot express a feature of the profile; the message names it."""

    def __init__(self, target: str, key: str, message: str) -> None:
        super().__init__(f"{key}: {message} ({target} cannot express it)")
        self.target = target
        self.key = key
        self.message = message


def forward_spec(forward: Forward) -> str:
    """``-L/-R/-D`` argument text: ``listen[:to]``."""
    listen = forward.listen.render()
    if forward.type is ForwardType.DYNAMIC or forward.to is None:
        return listen
    return f"{listen}:{forward.to.render()}"


FORWARD_FLAG = {ForwardType.LOCAL: "-L", ForwardType.REMOTE: "-R", ForwardType.DYNAMIC: "-D"}


def strict_host_key_checking(profile: Profile) -> str:
    """OpenSSH's StrictHostKeyChecking for the profile's host_key policy.

    A pinned fingerprint is strict for OpenSSH: the runtime writes the pinned key into a
    known_hosts file of its own, so an unknown or different key is still refused.
    """
    return "accept-new" if profile.host_key.mode is HostKeyMode.ACCEPT_NEW else "yes"
