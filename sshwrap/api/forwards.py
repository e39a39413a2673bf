"""Forwards as Python values: what a ``[[forward]]`` table says, and the port it got."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _mapping(kind: str, listen: int | str, to: str | None, probe: str | None,
             public: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"type": kind, "listen": listen}
    if to is not None:
        data["to"] = to
    if probe is not None:
        data["probe"] = probe
    if public:
        data["public"] = True
    return data


@dataclass(frozen=True)
class Local:
    """A local forward (``ssh -L``): ``listen`` here (0: a free port), ``to`` beyond the server."""

    to: str
    listen: int | str = 0
    probe: str | None = None
    public: bool = False

    def to_mapping(self) -> dict[str, Any]:
        """The forward as a profile's ``[[forward]]`` table."""
        return _mapping("local", self.listen, self.to, self.probe, self.public)


@dataclass(frozen=True)
class Remote:
    """A remote forward (``ssh -R``): ``listen`` on the server, ``to`` from this machine."""

    listen: int | str
    to: str
    probe: str | None = None
    public: bool = False

    def to_mapping(self) -> dict[str, Any]:
        """The forward as a profile's ``[[forward]]`` table."""
        return _mapping("remote", self.listen, self.to, self.probe, self.public)


@dataclass(frozen=True)
class Dynamic:
    """A SOCKS proxy (``ssh -D``) listening on ``listen`` (0: a free port)."""

    listen: int | str = 0
    probe: str | None = None
    public: bool = False

    def to_mapping(self) -> dict[str, Any]:
        """The forward as a profile's ``[[forward]]`` table."""
        return _mapping("dynamic", self.listen, None, self.probe, self.public)


ForwardSpec = Local | Remote | Dynamic


@dataclass(frozen=True)
class OpenForward:
    """One forward of a tunnel as it runs (or will run): ``listen_port`` is the port bound,
    None for a unix socket, or for ``listen = 0`` before the tunnel starts."""

    type: str
    listen: str
    to: str | None
    listen_host: str | None
    listen_port: int | None
    listen_path: str | None = None
