"""A private OpenSSH sshd on loopback with throwaway keys, for the demo and the test suite."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sshwrap.errors import MissingBinary, SshwrapError

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")


def find_sshd() -> str:
    found = shutil.which("sshd") or next((p for p in SSHD_CANDIDATES if os.path.exists(p)), None)
    if not found:
        raise MissingBinary("sshd is not installed",
                            hint="install OpenSSH's server: apt-get install openssh-server")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the caller retries if it is taken later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str, passphrase: str = "") -> None:
    if not shutil.which("ssh-keygen"):
        raise MissingBinary("ssh-keygen is not installed",
                            hint="install OpenSSH's client: apt-get install openssh-client")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )


@dataclass
class ClientIdentity:
    """A client key, a private known_hosts and an ssh_config that uses only them."""

    root: Path
    key: Path = field(init=False)
    known_hosts: Path = field(init=False)
    ssh_config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = self.root / "id_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.ssh_config = self.root / "ssh_config"
        if not self.key.exists():
            _keygen(self.key, "sshwrap-sandbox-client")
        self.known_hosts.touch(mode=0o600)
        self.ssh_config.write_text(
            "Host *\n"
            f"    IdentityFile {self.key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    PasswordAuthentication no\n"
            "    KbdInteractiveAuthentication no\n"
            "    UpdateHostKeys no\n"
        )

    def trust(self, host: str, port: int, host_public_key: str) -> None:
        """Add a server's host key to the private known_hosts."""
        name = host if port == 22 else f"[{host}]:{port}"
        with self.known_hosts.open("a") as handle:
            handle.write(f"{name} {host_public_key.strip()}\n")

    def forget(self, host: str, port: int) -> None:
        name = host if port == 22 else f"[{host}]:{port}"
        lines = self.known_hosts.read_text().splitlines(keepends=True)
        self.known_hosts.write_text("".join(ln for ln in lines if not ln.startswith(name + " ")))


@dataclass
class Sshd:
    """One sshd process: ``start()`` it, ``stop()`` it; the client is trusted automatically."""

    root: Path
    client: ClientIdentity
    host: str = "127.0.0.1"
    port: int = 0
    extra_config: Mapping[str, str] = field(default_factory=dict)
    netns: str | None = None  # run inside this network namespace (ip netns exec)
    trust_client: bool = True
    user: str = field(default_factory=getpass.getuser)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log_offset: int = field(default=0, init=False)

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def config_path(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_public_key(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().strip()

    def _write_config(self) -> None:
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.client.key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        settings = {
            "Port": str(self.port),
            "ListenAddress": self.host,
            "HostKey": str(self.host_key),
            "PidFile": "none",
            "AuthorizedKeysFile": str(authorized),
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "UsePAM": "no",
            "StrictModes": "no",
            "PermitRootLogin": "prohibit-password",
            "AllowTcpForwarding": "yes",
            "GatewayPorts": "no",
            "MaxStartups": "200:30:400",
            "MaxSessions": "100",
            "LogLevel": "VERBOSE",
            "PrintMotd": "no",
        }
        settings.update(self.extra_config)
        self.config_path.write_text("".join(f"{k} {v}\n" for k, v in settings.items()))

    def _command(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, find_sshd(), *args]

    def start(self, timeout: float = 10.0) -> Sshd:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.host_key.exists():
            _keygen(self.host_key, "sshwrap-sandbox-host")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        for _attempt in range(5):
            if not self.port or _attempt:
                self.port = free_port(self.host) if not self.netns else 22
            self._write_config()
            check = subprocess.run(self._command("-t", "-f", str(self.config_path)),
                                   capture_output=True, text=True, check=False)
            if check.returncode != 0:
                raise SshwrapError(f"sshd rejected its test config: {check.stderr.strip()}")
            log = self.log_path.open("ab")
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                self._command("-D", "-e", "-f", str(self.config_path)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
            log.close()
            if self._wait_ready(timeout):
                break
            self.stop()
        else:
            raise SshwrapError(f"sshd did not start; see {self.log_path}")
        if self.trust_client:
            self.client.trust(self.host, self.port, self.host_public_key)
        return self

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if self.netns:
                # Another namespace cannot be dialled from here; sshd says when it listens.
                if b"Server listening on" in self.log_path.read_bytes()[self._log_offset:]:
                    return True
            else:
                with contextlib.suppress(OSError), \
                        socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait(5)
        self.process = None
        # sshd's per-connection children live in the same session; end any still there.
        _kill_sessions_under(self.root)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_sessions_under(root: Path) -> None:
    """End leftover sshd children whose command line names this sandbox's config."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return
    marker = str(root / "sshd_config")
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in (proc.info["cmdline"] or []):
                proc.kill()


class BannerServer:
    """A tiny TCP service: sends a greeting line, then echoes what it receives."""

    def __init__(self, banner: bytes = b"220 sshwrap-demo ready\r\n", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.banner = banner
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)  # so that the accept loop notices stop()
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> BannerServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(self.banner)
                conn.settimeout(10)
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)

    def __enter__(self) -> BannerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def sandbox(root: Path) -> Iterator[tuple[Sshd, ClientIdentity]]:
    """A started sshd and the client identity that can log in to it."""
    client = ClientIdentity(root / "client")
    server = Sshd(root / "server", client)
    with server:
        yield server, client
