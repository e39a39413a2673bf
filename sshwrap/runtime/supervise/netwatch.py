"""Network changes (netlink) and resume from suspend, noticed at once: the engine re-verifies
every tunnel's connection and shared connection, and restarts those that cannot survive."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

# linux/rtnetlink.h: multicast groups (bit masks) and message types.
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
MESSAGES = {20: "an address appeared", 21: "an address went away",
            24: "a route appeared", 25: "a route went away"}
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
#: Messages of one change (an address and its routes) arrive together: collected this long.
SETTLE = 0.05
#: The suspend clock is read this often; a jump larger than SUSPEND_MIN counts as a resume.
TICK = 1.0
SUSPEND_MIN = 2.0
#: Set to 0 to leave dead connections to keep-alive alone (as before; for comparisons).
ENABLE_ENV = "SSHWRAP_NETWATCH"


def change_kinds(data: bytes) -> list[str]:
    """What the netlink messages in ``data`` tell, in order, once each (unknown types skipped)."""
    kinds: list[str] = []
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _seq, _port = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            break  # a malformed message: the rest of the datagram cannot be framed
        text = MESSAGES.get(kind)
        if text is not None and text not in kinds:
            kinds.append(text)
        offset += (length + 3) & ~3  # messages are 4-byte aligned
    return kinds


def suspended_seconds() -> float:
    """Time spent in suspend since boot: CLOCK_BOOTTIME counts it, CLOCK_MONOTONIC does not."""
    monotonic = time.clock_gettime(time.CLOCK_MONOTONIC)  # first: the difference never dips
    return time.clock_gettime(time.CLOCK_BOOTTIME) - monotonic


@dataclass(frozen=True)
class Change:
    reason: str
    resumed: bool = False  # from suspend: a path that looks fine may still be dead


class NetWatch:
    """A thread telling ``on_change`` about each network change and resume (Linux; elsewhere,
    or without netlink, only resumes are noticed, and only where CLOCK_BOOTTIME exists)."""

    def __init__(self, on_change: Callable[[Change], None],
                 suspended: Callable[[], float] = suspended_seconds) -> None:
        self.on_change = on_change
        self._suspended = suspended
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netwatch", daemon=True)
        self._sock: socket.socket | None = None

    def start(self) -> NetWatch:
        if os.environ.get(ENABLE_ENV, "1") == "0":
            return self
        with contextlib.suppress(OSError, AttributeError):  # no netlink: resumes only
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 socket.NETLINK_ROUTE)
            sock.bind((0, GROUPS))
            self._sock = sock
        self._thread.start()
        return self

    def stop(self) -> None:
        self._quit.set()
        if self._thread.is_alive():
            self._thread.join(TICK * 2)
        if self._sock is not None:
            self._sock.close()

    def _drain(self, sock: socket.socket) -> list[str]:
        kinds: list[str] = []
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                for kind in change_kinds(sock.recv(65536, socket.MSG_DONTWAIT)):
                    if kind not in kinds:
                        kinds.append(kind)
        return kinds

    def _run(self) -> None:
        try:
            last_gap = self._suspended()
        except (AttributeError, OSError):
            last_gap = None
        while not self._quit.is_set():
            kinds: list[str] = []
            if self._sock is not None:
                try:
                    readable, _, _ = select.select([self._sock], [], [], TICK)
                except OSError:
                    readable = []
                if readable:
                    time.sleep(SETTLE)
                    kinds = self._drain(self._sock)  # ENOBUFS (overrun) still means a change
            else:
                self._quit.wait(TICK)
            if last_gap is not None:
                gap = self._suspended()
                if gap - last_gap > SUSPEND_MIN:
                    self._tell(Change(f"resumed after {gap - last_gap:.0f} s of suspend",
                                      resumed=True))
                last_gap = gap
            if kinds:
                self._tell(Change("the network changed: " + ", ".join(kinds)))

    def _tell(self, change: Change) -> None:
        with contextlib.suppress(Exception):  # a bug here must not end the watching
            self.on_change(change)


# -- re-verifying the tunnels: which connection cannot survive -----------------------------


def client_links(pid: int) -> list[tuple[str, str, int]]:
    """(local address, remote address, remote port) of every established TCP connection of the
    client ``pid`` and its children (a ProxyJump's ssh holds the connection to the first hop)."""
    import psutil

    links: list[tuple[str, str, int]] = []
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return links
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        links += [(c.laddr.ip, c.raddr.ip, c.raddr.port) for c in connections
                  if c.status == psutil.CONN_ESTABLISHED and c.raddr]
    return links


def route_problem(local: str, remote: str, port: int) -> str | None:
    """Why a connection from ``local`` to ``remote`` cannot go on, or None: the local address
    is gone (bind fails), or no route leaves from it (a UDP connect does the route lookup and
    sends nothing)."""
    family = socket.AF_INET6 if ":" in remote else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((local, 0))
        except OSError:
            return f"its local address {local} is gone"
        try:
            probe.connect((remote, port))
        except OSError as error:
            return f"no route from {local} to {remote} ({error.strerror or error})"
    return None


class Restartable(Protocol):
    """What the engine's tunnels and shared connections' masters offer to a re-verification
    (runtime/supervise/supervisor.py, runtime/supervise/masters.py)."""

    def client_pid(self) -> int | None: ...
    def first_hop(self) -> tuple[str, int] | None: ...
    def drop_connection(self, reason: str) -> None: ...


def doomed(tunnel: Restartable, change: Change) -> str | None:
    """Why ``tunnel``'s connection cannot survive ``change``, or None (left to keep-alive)."""
    pid = tunnel.client_pid()
    if pid is None:
        return None  # starting or reconnecting: its own loop is already at it
    for local, remote, port in client_links(pid):
        problem = route_problem(local, remote, port)
        if problem is not None:
            return problem
    if change.resumed:
        hop = tunnel.first_hop()
        if hop is not None:
            from sshwrap.runtime.supervise.restart import probe

            if probe(*hop, timeout=1.0) is False:
                return f"{hop[0]} port {hop[1]} does not answer after the resume"
    return None


def recheck(tunnels: Iterable[Restartable], change: Change) -> list[str]:
    """Re-verify every tunnel after ``change``, all at once; restart those that cannot survive
    (each restarts as soon as a path exists). The reasons, for the engine's log."""
    tunnels = list(tunnels)
    reasons: list[str | None] = [None] * len(tunnels)

    def one(index: int) -> None:
        with contextlib.suppress(Exception):  # one tunnel's trouble must not stop the others
            reasons[index] = doomed(tunnels[index], change)

    # In parallel: a resume probes each first hop, and a dead one waits out its timeout.
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(tunnels))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    dropped = []
    for tunnel, reason in zip(tunnels, reasons, strict=True):
        if reason is not None:
            tunnel.drop_connection(f"{change.reason}: {reason}")
            dropped.append(reason)
    return dropped
