"""Who listens where, which sockets belong to sshwrap tunnels, and squatters beside them."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from sshwrap.runtime.system import listeners as reader
from sshwrap.runtime.system import sockets
from sshwrap.runtime.system.listeners import Listener
from sshwrap.runtime.system.paths import StatePaths


@dataclass(frozen=True)
class PortEntry:
    """One listening socket; ``tunnel`` names the sshwrap tunnel that owns it, if any."""

    family: str
    address: str
    port: int | None
    pid: int | None
    program: str
    command: str
    tunnel: str | None = None
    squatter: bool = False

    @property
    def listen(self) -> str:
        if self.port is None:
            return self.address
        return f"[{self.address}]:{self.port}" if self.family == "ipv6" else \
            f"{self.address}:{self.port}"


@dataclass(frozen=True)
class PortsReport:
    entries: tuple[PortEntry, ...]
    warnings: tuple[str, ...]

    def to_json(self) -> object:
        from dataclasses import asdict

        return {"sockets": [{**asdict(e), "listen": e.listen} for e in self.entries],
                "warnings": list(self.warnings)}


def running_tunnels(paths: StatePaths) -> dict[int, str]:
    """pid -> tunnel name for every recorded tunnel whose process is still the one started
    (pid, create time and command line all match)."""
    from sshwrap.errors import SshwrapError
    from sshwrap.runtime.system.state import live_process, read_record, recorded_names

    owners: dict[int, str] = {}
    for name in recorded_names(paths):
        try:
            record = read_record(paths, name)
        except SshwrapError:  # a damaged record: status reports it
            continue
        if record is not None and live_process(record) is not None:
            # A shared master's listeners are owned by every tunnel on it ("a,b"): which
            # forward a listener serves is the tunnel's status to tell, not the socket's.
            owners[record.pid] = f"{owners[record.pid]},{name}" if record.pid in owners \
                else name
    return owners


def _owner(pid: int | None, tunnels: dict[int, str]) -> str | None:
    """The tunnel owning ``pid``: its own process, or one of its group (a ProxyJump child)."""
    if pid is None:
        return None
    if pid in tunnels:
        return tunnels[pid]
    try:
        return tunnels.get(os.getpgid(pid))
    except OSError:
        return None


def _other_family(family: str) -> str:
    return "ipv6" if family == "ipv4" else "ipv4"


def build_report(listeners: Sequence[Listener], tunnels: dict[int, str],
                 processes: dict[int, sockets.ProcessInfo],
                 ports: Sequence[int] = ()) -> PortsReport:
    """The report from one socket scan; ``ports`` limits it to those TCP ports."""
    wanted = set(ports)
    rows: list[PortEntry] = []
    for ln in listeners:
        tunnel = _owner(ln.pid, tunnels)
        if ln.family == "unix" and tunnel is None:
            continue  # every desktop has hundreds; only tunnels' sockets matter here
        if wanted and ln.port not in wanted:
            continue
        info = processes.get(ln.pid) if ln.pid is not None else None
        program = info.name if info and info.name else ("?" if ln.pid is None else "")
        command = shlex.join(info.cmdline) if info and info.cmdline else ""
        rows.append(PortEntry(ln.family, ln.address, ln.port, ln.pid, program, command, tunnel))

    warnings: list[str] = []
    flagged: set[int] = set()
    by_port: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        if row.port is not None and row.family in ("ipv4", "ipv6"):
            by_port.setdefault(row.port, []).append(index)
    for port, indexes in sorted(by_port.items()):
        for i in indexes:
            held = rows[i]
            if held.tunnel is None:
                continue
            for j in indexes:
                other = rows[j]
                if other.family != _other_family(held.family) or other.tunnel == held.tunnel:
                    continue
                flagged.update((i, j))
                who = f"tunnel {other.tunnel}" if other.tunnel else \
                    f"pid {other.pid} ({other.program or '?'})"
                warnings.append(
                    f"port {port}: tunnel {held.tunnel} holds {held.listen} but {who} listens on "
                    f"{other.listen}; a client of localhost:{port} may reach either")
    entries = tuple(
        PortEntry(**{**vars(row), "squatter": index in flagged}) for index, row in enumerate(rows))
    ordered = tuple(sorted(entries, key=lambda e: (e.port is None, e.port or 0, e.family,
                                                   e.address)))
    return PortsReport(ordered, tuple(dict.fromkeys(warnings)))


def list_ports(paths: StatePaths, ports: Sequence[int] = ()) -> PortsReport:
    """Every listening TCP socket (and the unix sockets of tunnels) with pid and program."""
    listeners = reader.listening_sockets()
    tunnels = running_tunnels(paths)
    pids = {ln.pid for ln in listeners if ln.pid is not None and (not ports or ln.port in ports
                                                                  or ln.family == "unix")}
    processes = {pid: sockets.process_info(pid) for pid in pids}
    return build_report(listeners, tunnels, processes, ports)
