"""The guides' networks for real: hosts as network namespaces joined by bridged segments."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sshwrap.errors import MissingBinary, SshwrapError
from sshwrap.netservers import GUIDE_USER, REAL_KINDS, PasswordUser, Program
from sshwrap.sandbox import ClientIdentity, Sshd


@dataclass(frozen=True)
class Service:
    """A TCP service: ``banner`` (greets, echoes), ``http``, or a netservers.REAL_KINDS."""

    port: int
    kind: str = "banner"
    banner: str = ""
    bind: str = "0.0.0.0"  # noqa: S104 - inside a lab namespace: only the lab's segments
    tls: bool = False  # nginx's listener speaks TLS; PostgreSQL offers it


@dataclass(frozen=True)
class HostSpec:
    name: str
    segments: tuple[str, ...]
    sshd: bool = False
    services: tuple[Service, ...] = ()
    sshd_config: tuple[tuple[str, str], ...] = ()  # sshd_config lines added to the defaults
    password_login: bool = False  # the guide's user logs in to its sshd with a password only
    dropbear: str = ""  # a segment: Dropbear listens on port 22 of that address only
    pam_sshd: str = ""  # the host's own /etc/pam.d/sshd (e.g. a one-time code with UsePAM)


#: The hosts of the two classic guides. Segments have no routing between them: a host reaches
#: only hosts that share a segment with it, and resolves only their names.
GUIDE_HOSTS: tuple[HostSpec, ...] = (
    HostSpec("you", ("internet",), services=(Service(8888, "http", bind="127.0.0.1"),)),
    HostSpec("bastion-host", ("internet", "vlan2"), sshd=True),
    HostSpec("bridge-host", ("internet", "beta-lan"), sshd=True),
    HostSpec("web-server", ("vlan2",), services=(Service(80, "http"), Service(443, "http"))),
    HostSpec("db-server", ("vlan2",), services=(Service(3306, "banner", "5.7.42-mysql-like"),)),
    HostSpec("intranet", ("vlan2",), services=(Service(80, "http"),)),
    HostSpec("test-server", ("vlan2", "vlan3"), sshd=True),
    HostSpec("git-server", ("vlan3",), services=(Service(7999, "banner", "SSH-2.0-git-like"),)),
    HostSpec("beta-server", ("beta-lan",), sshd=True),
)

#: The guides' tunnels as profiles for this network (the lab's client host is 'you').
GUIDE_PROFILES: dict[str, str] = {
    "mysql": """description = "MySQL behind the gateway, as localhost:3307"
host = "bastion-host"
compression = true
[[forward]]
type = "local"
listen = "localhost:3307"
to = "db-server:3306"
probe = "banner"
""",
    "vpn": """description = "Poor man's VPN: web-server's HTTP and HTTPS"
host = "bastion-host"
[[forward]]
type = "local"
listen = 8080
to = "web-server:80"
probe = "http"
[[forward]]
type = "local"
listen = 8443
to = "web-server:443"
""",
    "socks": """description = "SOCKS proxy through the bastion"
host = "bastion-host"
[[forward]]
type = "dynamic"
listen = 1080
probe = "socks"
""",
    "git": """description = "Double tunnel: git-server behind bastion-host and test-server"
host = "test-server"
jump = ["bastion-host"]
[[forward]]
type = "local"
listen = 7999
to = "git-server:7999"
probe = "banner"
""",
    "share": """description = "Remote tunnel: bastion-host's localhost:8081 reaches our 8888"
host = "bastion-host"
[[forward]]
type = "remote"
listen = 8081
to = "localhost:8888"
""",
    "beta": """description = "Reverse double tunnel: beta-server reaches the proxy on this machine"
host = "beta-server"
jump = ["bridge-host"]
[[forward]]
type = "remote"
listen = 9999
to = "localhost:8888"
""",
}

IP = "ip"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - inside a lab namespace: only the lab's own segments


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def can_run() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which(IP) is None:
        return "iproute2 ('ip') is not installed"
    probe = f"swprobe{secrets.token_hex(3)}"
    made = _run(IP, "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _run(IP, "netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    spec: HostSpec
    netns: str
    addresses: dict[str, str] = field(default_factory=dict)  # segment -> IPv4 address
    sshd: Sshd | None = None
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    programs: dict[int, Program] = field(default_factory=dict)  # real servers, by port
    extra_sshds: list[Sshd] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class NetLab:
    """Namespaces, bridges, /etc/hosts per host, one sshd per ssh host, and the services.

    Names carry a random tag so that several labs can exist at once; ``down()`` removes
    everything, and is safe to call twice or after a partial ``up()``.
    """

    root: Path
    hosts: Sequence[HostSpec] = GUIDE_HOSTS
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    client: ClientIdentity = field(init=False)
    by_name: dict[str, Host] = field(default_factory=dict, init=False)
    switch: str = field(init=False)
    user: PasswordUser | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.switch = f"sw{self.tag}-switch"
        self.client = ClientIdentity(self.root / "client")

    # -- building -------------------------------------------------------------------------
    def up(self) -> NetLab:
        if shutil.which(IP) is None:
            raise MissingBinary("ip (iproute2) is not installed", hint="apt-get install iproute2")
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        _run(IP, "netns", "add", self.switch)
        segments = sorted({seg for spec in self.hosts for seg in spec.segments})
        for index in range(1, len(segments) + 1):
            _run(IP, "-n", self.switch, "link", "add", f"br{index}", "type", "bridge")
            _run(IP, "-n", self.switch, "link", "set", f"br{index}", "up")
        seg_index = {seg: i for i, seg in enumerate(segments, start=1)}
        for host_index, spec in enumerate(self.hosts, start=1):
            netns = f"sw{self.tag}-{spec.name}"[:48]
            host = Host(spec, netns)
            self.by_name[spec.name] = host
            _run(IP, "netns", "add", netns)
            _run(IP, "-n", netns, "link", "set", "lo", "up")
            for nic, segment in enumerate(spec.segments):
                peer = f"h{host_index}s{seg_index[segment]}"
                _run(IP, "-n", self.switch, "link", "add", peer, "type", "veth",
                     "peer", "name", f"eth{nic}", "netns", netns)
                bridge = f"br{seg_index[segment]}"
                _run(IP, "-n", self.switch, "link", "set", peer, "master", bridge)
                _run(IP, "-n", self.switch, "link", "set", peer, "up")
                address = f"10.231.{seg_index[segment]}.{host_index}"
                host.addresses[segment] = address
                _run(IP, "-n", netns, "addr", "add", f"{address}/24", "dev", f"eth{nic}")
                _run(IP, "-n", netns, "link", "set", f"eth{nic}", "up")
        for host in self.by_name.values():
            self._write_etc(host)
        if any(spec.password_login or spec.dropbear for spec in self.hosts):
            self.user = PasswordUser().create()
        for host in self.by_name.values():
            self._start_host(host)

    def neighbours(self, host: Host) -> dict[str, str]:
        """Names this host can reach, with the address it reaches them on."""
        found: dict[str, str] = {}
        for other in self.by_name.values():
            if other is host:
                continue
            shared = [seg for seg in host.spec.segments if seg in other.addresses]
            if shared:
                found[other.name] = other.addresses[shared[0]]
        return found

    def _write_etc(self, host: Host) -> None:
        # `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc, so each host resolves only
        # its neighbours, and an empty resolv.conf makes other names fail at once.
        etc = Path("/etc/netns") / host.netns
        etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost",
                 f"127.0.1.1\t{host.name}"]
        lines += [f"{addr}\t{name}" for name, addr in self.neighbours(host).items()]
        (etc / "hosts").write_text("\n".join(lines) + "\n")
        (etc / "resolv.conf").write_text("options timeout:1 attempts:1\n")
        if host.spec.pam_sshd:  # its own PAM stack for sshd, in the namespace's /etc
            (etc / "pam.d").mkdir(exist_ok=True)
            (etc / "pam.d" / "sshd").write_text(host.spec.pam_sshd)
        if not host.spec.sshd:
            # Client hosts get a global ssh_config (it replaces /etc/ssh inside the namespace)
            # naming the lab's key and known_hosts, so plain profiles work unchanged there.
            (etc / "ssh").mkdir(exist_ok=True)
            (etc / "ssh" / "ssh_config").write_text(self.client.ssh_config.read_text())

    def _start_host(self, host: Host) -> None:
        if host.spec.sshd:
            config = dict(host.spec.sshd_config)
            if host.spec.password_login:
                # The lab key would let anyone in: the guide's user has its password only.
                config.update(PasswordAuthentication="yes",
                              Match=f"User {GUIDE_USER}\n    PubkeyAuthentication no")
            host.sshd = Sshd(self.root / host.name, self.client, host=ANY_ADDRESS, port=22,
                             netns=host.netns, trust_client=False, extra_config=config)
            host.sshd.start()
            self.client.trust(host.name, 22, host.sshd.host_public_key)
        if host.spec.dropbear:
            from sshwrap import netservers

            server, key = netservers.dropbear(self.root / f"{host.name}-dropbear",
                                              self.exec_argv(host.name, []),
                                              host.addresses[host.spec.dropbear], 22)
            host.programs[22] = server.start()
            self.client.trust(host.name, 22, key)
        for service in host.spec.services:
            if service.kind in REAL_KINDS:
                host.programs[service.port] = self._program(host, service).start()
                continue
            command = [sys.executable, "-m", "sshwrap.netservers", "serve", service.kind,
                       service.bind, str(service.port), service.banner or host.name]
            log = (self.root / f"{host.name}-{service.port}.log").open("ab")
            host.services.append(subprocess.Popen(
                self.exec_argv(host.name, command), stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True, env=_python_env()))
            log.close()
        for service in host.spec.services:
            self._wait_listening(host, service.port)

    def _program(self, host: Host, service: Service) -> Program:
        from sshwrap import netservers

        root, argv = self.root / f"{host.name}-{service.port}", self.exec_argv(host.name, [])
        return netservers.real_server(service.kind, root, argv, service.bind, service.port,
                                      tls=service.tls)

    def stop_service(self, host: str, port: int) -> None:
        """Stop a real server (MariaDB, Dropbear...), as its administrator would."""
        self.by_name[host].programs[port].stop()

    def start_service(self, host: str, port: int) -> None:
        self.by_name[host].programs[port].start()

    def add_sshd(self, host: str, port: int, config: dict[str, str]) -> Sshd:
        """Another sshd on ``host`` (the lab key logs in), e.g. with a forwarding policy."""
        name = f"{host}-sshd-{port}"
        server = Sshd(self.root / name, self.client, host=ANY_ADDRESS, port=port,
                      netns=self.by_name[host].netns, trust_client=False, extra_config=config)
        server.start()
        self.by_name[host].extra_sshds.append(server)
        self.client.trust(host, port, server.host_public_key)
        return server

    def _wait_listening(self, host: Host, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listening = _run(IP, "netns", "exec", host.netns, "ss", "-Htln", f"sport = :{port}",
                             check=False)
            if listening.stdout.strip():
                return
            time.sleep(0.05)
        raise SshwrapError(f"{host.name}: service on port {port} did not start")

    # -- using ------------------------------------------------------------------------------
    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on ``host``."""
        return [IP, "netns", "exec", self.by_name[host].netns, *argv]

    def run(self, host: str, argv: Sequence[str], *, timeout: float = 60,
            env: dict[str, str] | None = None, check: bool = False,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.exec_argv(host, argv), capture_output=True, text=True,
                              timeout=timeout, env=env, check=check, input=input_text)

    def set_link(self, host: str, segment: str, up: bool) -> None:
        """Cut or restore ``host``'s link to ``segment`` (its cable, as it were)."""
        spec = self.by_name[host].spec
        nic = f"eth{spec.segments.index(segment)}"
        _run(IP, "-n", self.by_name[host].netns, "link", "set", nic, "up" if up else "down")

    def crash_sshd(self, host: str) -> None:
        """Stop ``host``'s sshd and every session it serves, as a crash or reboot would."""
        self.sshd(host).stop()
        self._kill_namespace_processes(self.by_name[host].netns)

    def start_sshd(self, host: str) -> None:
        """Start ``host``'s sshd again, with the same host key and port."""
        self.sshd(host).start()

    def sshd(self, host: str) -> Sshd:
        server = self.by_name[host].sshd
        if server is None:
            raise KeyError(f"{host} runs no sshd")
        return server

    # -- tearing down -------------------------------------------------------------------
    def down(self) -> None:
        for host in self.by_name.values():
            for server in [host.sshd, *host.extra_sshds]:
                if server is not None:
                    server.stop()
            for program in host.programs.values():
                program.remove()
            for proc in host.services:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            host.services.clear()
        for netns in [h.netns for h in self.by_name.values()] + [self.switch]:
            _remove_namespace(netns)
        self.by_name.clear()
        if self.user is not None:
            self.user.remove()
            self.user = None

    @staticmethod
    def _kill_namespace_processes(netns: str) -> None:
        pids = _run(IP, "netns", "pids", netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def __enter__(self) -> NetLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def remove_leftovers() -> list[str]:
    """Remove the namespaces (and their processes) of labs that crashed; return their names."""
    listing = _run(IP, "netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in listing if line.strip()]
    removed = [n for n in names if n.startswith("sw") and "-" in n]
    for netns in removed:
        _remove_namespace(netns)
    return removed


def _remove_namespace(netns: str) -> None:
    """A namespace gone with every process in it, and its /etc overrides."""
    NetLab._kill_namespace_processes(netns)
    _run(IP, "netns", "del", netns, check=False)
    shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)
