"""Real services that wait for the client, from Debian packages, as throwaway loopback instances:
PostgreSQL, Redis, memcached, nginx (HTTP and TLS). Each can be stopped and started again."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sshwrap import netservers
from sshwrap.netservers import Program


def _program(name: str) -> str:
    """The program's path, or the test skipped naming its package (scripts/dev installs them)."""
    reason = netservers.missing(name)
    if reason:
        pytest.skip(reason)
    return netservers.program(name)


def loopback_address() -> str:
    """A loopback address of its own (127.x.y.z): a service can listen on its well-known port
    there without meeting another test's, or the machine's own."""
    return f"127.{random.randint(16, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


@dataclass
class Service:
    """One real server: where it listens, its log, and its process."""

    name: str
    host: str
    port: int
    program: Program

    @property
    def log(self) -> Path:
        return self.program.log

    def start(self) -> Service:
        self.program.start()
        return self

    def stop(self) -> None:
        self.program.stop()


@contextlib.contextmanager
def postgresql(host: str, port: int, *, tls: bool = False) -> Iterator[Service]:
    """A throwaway cluster run by the ``postgres`` user; every connection logged."""
    for name in ("postgres", "initdb", "runuser", "openssl"):
        _program(name)
    service = Service("postgresql", host, port, netservers.postgresql([], host, port, tls=tls))
    try:
        yield service.start()
    finally:
        service.program.remove()


@contextlib.contextmanager
def redis(root: Path, host: str, port: int) -> Iterator[Service]:
    _program("redis-server")
    service = Service("redis", host, port, netservers.redis(root, [], host, port))
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def memcached(root: Path, host: str, port: int) -> Iterator[Service]:
    _program("memcached")
    service = Service("memcached", host, port, netservers.memcached(root, [], host, port))
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def nginx(root: Path, host: str, http_port: int, tls_port: int) -> Iterator[Service]:
    """nginx with a plain HTTP listener and a TLS one (the same self-signed certificate)."""
    _program("nginx")
    _program("openssl")
    service = Service("nginx", host, http_port,
                      netservers.nginx(root, [], host, http_port, tls_port))
    try:
        yield service.start()
    finally:
        service.stop()
