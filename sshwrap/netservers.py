"""Real servers from Debian packages for the lab: MariaDB, Dropbear, tinyproxy, a password user."""

from __future__ import annotations

import contextlib
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
}
_SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def program(name: str) -> str:
    """The full path of ``name`` (sbin included); MissingBinary naming its package."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in _SBIN if os.access(f"{d}/{name}", os.X_OK)), None)
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
