"""Helpers of the Python API tests: what listens on a port, and who holds it."""

from __future__ import annotations

import socket

import psutil


def listeners(port: int) -> dict[str, int | None]:
    """Address -> pid of every TCP socket listening on ``port``."""
    return {c.laddr.ip: c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def squat(host: str, port: int = 0) -> socket.socket:
    """A socket listening on ``host:port`` (0: any free port), held by this test."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen(1)
    return sock
