"""Real services that wait for the client, from Debian packages, as throwaway loopback instances:
PostgreSQL, Redis, memcached, nginx (HTTP and TLS). Each can be stopped and started again."""

from __future__ import annotations

import contextlib
import glob
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sshwrap.netservers import Program

#: Where each program comes from (scripts/dev installs them for the tests).
PACKAGES = {"postgres": "postgresql", "redis-server": "redis-server",
            "memcached": "memcached", "nginx": "nginx-light", "openssl": "openssl"}


def _program(name: str) -> str:
    if name == "postgres":  # not on PATH: Debian keeps each major version apart
        found = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1:]), None)
    else:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install {PACKAGES[name]})")
    return found


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


def _certificate(root: Path, owner: str | None = None) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``db.probe.test``."""
    key, cert = root / "key.pem", root / "cert.pem"
    subprocess.run([_program("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=db.probe.test/O=sshwrap tests"],
                   check=True, capture_output=True)
    key.chmod(0o600)
    if owner is not None:
        shutil.chown(key, owner)
        shutil.chown(cert, owner)
    return key, cert


@contextlib.contextmanager
def postgresql(host: str, port: int, *, tls: bool = False) -> Iterator[Service]:
    """A throwaway cluster run by the ``postgres`` user (it refuses to run as root), in a
    directory of its own outside pytest's root-only tmp_path; every connection logged."""
    postgres = _program("postgres")
    root = Path(tempfile.mkdtemp(prefix="sshwrap-pg-"))
    try:
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*run_as, str(Path(postgres).parent / "initdb"), "-D",
                        str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True)
        settings = ["-c", f"listen_addresses={host}", "-c", "log_connections=on",
                    "-c", "log_disconnections=on", "-c", "fsync=off"]
        if tls:
            key, cert = _certificate(root, owner="postgres")
            settings += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}",
                         "-c", f"ssl_key_file={key}"]
        argv = [*run_as, postgres, "-D", str(root / "data"), "-k", str(root), "-p", str(port),
                *settings]
        service = Service("postgresql", host, port, Program(
            "postgres", argv, root / "postgres.log", b"ready to accept connections"))
        try:
            yield service.start()
        finally:
            service.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis(root: Path, host: str, port: int) -> Iterator[Service]:
    argv = [_program("redis-server"), "--port", str(port), "--bind", host, "--save", "",
            "--appendonly", "no", "--dir", str(root), "--loglevel", "verbose"]
    service = Service("redis", host, port, Program(
        "redis-server", argv, root / "redis.log", b"Ready to accept connections"))
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def memcached(root: Path, host: str, port: int) -> Iterator[Service]:
    argv = [_program("memcached"), "-l", host, "-p", str(port), "-U", "0", "-u", "nobody",
            "-vv"]
    service = Service("memcached", host, port, Program(
        "memcached", argv, root / "memcached.log", b"server listening"))
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def nginx(root: Path, host: str, http_port: int, tls_port: int) -> Iterator[Service]:
    """nginx with a plain HTTP listener and a TLS one (the same self-signed certificate)."""
    root.mkdir(parents=True, exist_ok=True)
    key, cert = _certificate(root)
    config = root / "nginx.conf"
    config.write_text(f"""daemon off;
pid {root}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}; proxy_temp_path {root}; fastcgi_temp_path {root};
    uwsgi_temp_path {root}; scgi_temp_path {root};
    server {{
        listen {host}:{http_port};
        listen {host}:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "hello\\n"; }}
    }}
}}
""")
    argv = [_program("nginx"), "-p", str(root), "-c", str(config), "-e", "stderr"]
    service = Service("nginx", host, http_port, Program(
        "nginx", argv, root / "nginx.log", b"start worker process"))
    try:
        yield service.start()
    finally:
        service.stop()
