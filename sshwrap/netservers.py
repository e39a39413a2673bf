"""Real servers from Debian packages for the lab and the tests: MariaDB, Dropbear, tinyproxy,
services that wait for the client (PostgreSQL, Redis, memcached, nginx), a password user."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sshwrap.errors import MissingBinary, SshwrapError

#: The guide's gateway login (ssh-tunnel-metawerx.txt): a password user on the gateway.
GUIDE_USER = "ssh_cassie"
GUIDE_PASSWORD = "cassiepass"  # noqa: S105 - the guide's published example password

#: The Debian package of each program the lab's real servers need.
PACKAGES = {
    "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client", "dropbear": "dropbear-bin", "dropbearkey": "dropbear-bin",
    "tinyproxy": "tinyproxy", "useradd": "passwd", "chpasswd": "passwd",
    "postgres": "postgresql", "initdb": "postgresql", "psql": "postgresql-client",
    "redis-server": "redis-server", "memcached": "memcached", "nginx": "nginx-light",
    "openssl": "openssl", "runuser": "util-linux", "plink": "putty-tools",
    "redis-cli": "redis-tools",
}
#: Debian keeps each PostgreSQL major version apart, off PATH: the newest is taken.
_VERSIONED = {"postgres": "/usr/lib/postgresql/*/bin/postgres",
              "initdb": "/usr/lib/postgresql/*/bin/initdb"}
_SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def program(name: str) -> str:
    """The full path of ``name`` (sbin included); MissingBinary naming its package."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in _SBIN if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None and name in _VERSIONED:
        found = next(iter(sorted(glob.glob(_VERSIONED[name]))[-1:]), None)
    if found is None:
        package = PACKAGES.get(name, name)
        raise MissingBinary(f"{name} is not installed", hint=f"apt-get install {package}")
    return found


def missing(*names: str) -> str | None:
    """None when every program is here, else which package is missing (a skip reason)."""
    for name in names:
        try:
            program(name)
        except MissingBinary as exc:
            return f"{exc.message} ({exc.hint})"
    return None


@dataclass
class PasswordUser:
    """A throwaway system user with a password and a home of its own (root only)."""

    name: str = GUIDE_USER
    password: str = GUIDE_PASSWORD
    home: Path | None = None
    created: bool = False

    def create(self) -> PasswordUser:
        exists = subprocess.run(["id", self.name], capture_output=True, check=False)
        self.home = Path(tempfile.mkdtemp(prefix=f"sshwrap-{self.name}-"))
        self.home.chmod(0o755)
        if exists.returncode != 0:
            subprocess.run([program("useradd"), "-M", "-d", str(self.home), "-s", "/bin/sh",
                            self.name], check=True, capture_output=True)
            self.created = True
        shutil.chown(self.home, self.name)
        subprocess.run([program("chpasswd")], input=f"{self.name}:{self.password}\n",
                       text=True, check=True, capture_output=True)
        return self

    def remove(self) -> None:
        if self.created:
            subprocess.run(["userdel", self.name], check=False, capture_output=True)
            self.created = False
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


class Program:
    """One real server process run in a namespace; ``start`` again after ``stop``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, ready: bytes) -> None:
        self.name, self.argv, self.log, self.ready = name, list(argv), log, ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.scratch: Path | None = None  # a folder of its own, removed with it

    def start(self) -> Program:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=handle,
                                         stderr=handle, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.ready in self.log.read_bytes()[offset:]:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise SshwrapError(f"{self.name} did not start; see {self.log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(5)

    def remove(self) -> None:
        """Stopped for good, its folder of its own gone."""
        self.stop()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


#: The real servers ``real_server`` runs; the lab's PostgreSQL lets every lab address log in.
REAL_KINDS = ("mariadb", "tinyproxy", "postgresql", "redis", "memcached", "nginx")
LAB_NETWORK = "10.231.0.0/16"


def mariadb(root: Path, netns_argv: Sequence[str], port: int) -> Program:
    """MariaDB on every lab address of its host, with the guide's user allowed from anywhere."""
    data = root / "data"
    if not data.exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([program("mariadb-install-db"), "--no-defaults", f"--datadir={data}",
                        "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=normal"],
                       check=True, capture_output=True, cwd=root)
    init = root / "init.sql"
    init.write_text(f"CREATE USER IF NOT EXISTS '{GUIDE_USER}'@'%' IDENTIFIED BY "
                    f"'{GUIDE_PASSWORD}';\nGRANT USAGE ON *.* TO '{GUIDE_USER}'@'%';\n")
    argv = [*netns_argv, program("mariadbd"), "--no-defaults", f"--datadir={data}",
            "--user=root", f"--socket={root / 'mysqld.sock'}", f"--pid-file={root / 'pid'}",
            f"--port={port}", "--bind-address=0.0.0.0", "--skip-log-bin",
            "--skip-name-resolve", f"--init-file={init}"]
    return Program("mariadbd", argv, root / "mariadbd.log", b"ready for connections")


def dropbear(root: Path, netns_argv: Sequence[str], bind: str, port: int) -> tuple[Program, str]:
    """Dropbear listening on one address only (as on a router); and its public host key."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "dropbear_ed25519_host_key"
    if not key.exists():
        subprocess.run([program("dropbearkey"), "-t", "ed25519", "-f", str(key)], check=True,
                       capture_output=True)
    shown = subprocess.run([program("dropbearkey"), "-y", "-f", str(key)], check=True,
                           capture_output=True, text=True).stdout
    public = next(line for line in shown.splitlines() if line.startswith("ssh-"))
    argv = [*netns_argv, program("dropbear"), "-F", "-E", "-r", str(key),
            "-p", f"{bind}:{port}", "-P", str(root / "dropbear.pid")]
    return Program("dropbear", argv, root / "dropbear.log", b"Not backgrounding"), public


def tinyproxy(root: Path, netns_argv: Sequence[str], port: int) -> Program:
    """tinyproxy on every lab address of its host, open to the lab's addresses."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "tinyproxy.conf"
    config.write_text(f"Port {port}\nTimeout 30\nAllow 10.231.0.0/16\nAllow 127.0.0.1\n"
                      "LogLevel Info\n")
    argv = [*netns_argv, program("tinyproxy"), "-d", "-c", str(config)]
    return Program("tinyproxy", argv, root / "tinyproxy.log", b"listening on")


def certificate(root: Path, owner: str | None = None) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``db.probe.test`` (key, certificate)."""
    key, cert = root / "key.pem", root / "cert.pem"
    subprocess.run([program("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=db.probe.test/O=sshwrap tests"],
                   check=True, capture_output=True)
    key.chmod(0o600)
    if owner is not None:
        shutil.chown(key, owner)
        shutil.chown(cert, owner)
    return key, cert


def postgresql(netns_argv: Sequence[str], host: str, port: int, *, tls: bool = False,
               clients: str = "") -> Program:
    """A throwaway cluster run by the ``postgres`` user (it refuses to run as root) in a folder
    of its own (``remove`` deletes it), every connection logged; ``clients`` (a CIDR) may log
    in over TCP."""
    run_as = [program("runuser"), "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="sshwrap-pg-"))
    try:
        shutil.chown(root, "postgres")
        data = root / "data"
        subprocess.run([*run_as, program("initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, capture_output=True)
        if clients:
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {clients} trust\n")
        settings = ["-c", f"listen_addresses={host}", "-c", "log_connections=on",
                    "-c", "log_disconnections=on", "-c", "fsync=off"]
        if tls:
            key, cert = certificate(root, owner="postgres")
            settings += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}",
                         "-c", f"ssl_key_file={key}"]
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    argv = [*netns_argv, *run_as, program("postgres"), "-D", str(data), "-k", str(root),
            "-p", str(port), *settings]
    server = Program("postgres", argv, root / "postgres.log", b"ready to accept connections")
    server.scratch = root
    return server


def redis(root: Path, netns_argv: Sequence[str], host: str, port: int) -> Program:
    """Redis without persistence; open to every client (inside a lab or on loopback only)."""
    root.mkdir(parents=True, exist_ok=True)
    argv = [*netns_argv, program("redis-server"), "--port", str(port), "--bind", host,
            "--save", "", "--appendonly", "no", "--dir", str(root), "--loglevel", "verbose",
            "--protected-mode", "no"]
    return Program("redis-server", argv, root / "redis.log", b"Ready to accept connections")


def memcached(root: Path, netns_argv: Sequence[str], host: str, port: int) -> Program:
    root.mkdir(parents=True, exist_ok=True)
    argv = [*netns_argv, program("memcached"), "-l", host, "-p", str(port), "-U", "0",
            "-u", "nobody", "-vv"]
    return Program("memcached", argv, root / "memcached.log", b"server listening")


def nginx(root: Path, netns_argv: Sequence[str], host: str, http_port: int | None,
          tls_port: int | None) -> Program:
    """nginx with a plain HTTP listener, a TLS one (a self-signed certificate), or both."""
    root.mkdir(parents=True, exist_ok=True)
    key, cert = root / "key.pem", root / "cert.pem"
    if not key.exists():
        certificate(root)
    listens = ([f"listen {host}:{http_port};"] if http_port else []) + \
        ([f"listen {host}:{tls_port} ssl;"] if tls_port else [])
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
        {" ".join(listens)}
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "hello\\n"; }}
    }}
}}
""")
    argv = [*netns_argv, program("nginx"), "-p", str(root), "-c", str(config), "-e", "stderr"]
    return Program("nginx", argv, root / "nginx.log", b"start worker process")


def real_server(kind: str, root: Path, netns_argv: Sequence[str], bind: str, port: int, *,
                tls: bool = False) -> Program:
    """The lab's server of ``kind`` (one of REAL_KINDS) on ``port``, its files under ``root``;
    ``tls``: nginx's listener speaks TLS, PostgreSQL offers it."""
    if kind == "mariadb":
        return mariadb(root, netns_argv, port)
    if kind == "tinyproxy":
        return tinyproxy(root, netns_argv, port)
    if kind == "postgresql":
        return postgresql(netns_argv, bind, port, tls=tls, clients=LAB_NETWORK)
    if kind == "redis":
        return redis(root, netns_argv, bind, port)
    if kind == "memcached":
        return memcached(root, netns_argv, bind, port)
    if kind == "nginx":
        return nginx(root, netns_argv, bind, None if tls else port, port if tls else None)
    raise ValueError(f"no real server of kind {kind!r}")


def _serve(kind: str, bind: str, port: int, banner: str) -> None:
    """Run one service in the foreground (inside a namespace)."""
    if kind == "http":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"hello from {banner} port {port}, you asked for {self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        ThreadingHTTPServer((bind, port), Handler).serve_forever()
        return
    from sshwrap.sandbox import BannerServer

    server = BannerServer(banner.encode() + b"\r\n", host=bind, port=port).start()
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    server.stop()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "serve":
        _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit("usage: python -m sshwrap.netservers serve KIND BIND PORT BANNER")
