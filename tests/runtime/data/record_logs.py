"""Record the real ssh and plink logs that tests/runtime/test_diagnose.py reads back.

Run as root from the repository: ``python tests/runtime/data/record_logs.py``. Every case runs
the real client against a private sshd (sshwrap.sandbox) and stores, under ``logs/``, the log
(-v -E output plus the client's stderr, as the runtime keeps them) and the profile it ran as.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import tomli_w

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.plink import compile_plink
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.compile.ssh import compile_ssh
from sshwrap.core.model import (
    Client,
    Forward,
    ForwardType,
    Hop,
    HostKeyMode,
    HostKeyPolicy,
    Profile,
    TcpAddress,
)
from sshwrap.core.unparse import profile_to_mapping
from sshwrap.sandbox import ClientIdentity, Sshd, free_port

OUT = Path(__file__).resolve().parent / "logs"
FACTS = HostFacts(ipv6_loopback=True)
SSH_SPEC = LaunchSpec(connect_timeout=3)


def _save_profile(case: str, profile: Profile) -> None:
    mapping = profile_to_mapping(profile)
    # Temporary paths of the recording mean nothing to the tests.
    for key in ("ssh_config_file", "identity_file"):
        mapping.pop(key, None)
    (OUT / f"{case}.toml").write_bytes(tomli_w.dumps(mapping).encode())


def _clean(text: str) -> str:
    return text


@contextlib.contextmanager
def _running(argv: list[str], log: Path, env: dict[str, str] | None = None,
             ) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as handle:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle,
                                start_new_session=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)


def _run_to_exit(argv: list[str], log: Path, env: dict[str, str] | None = None,
                 timeout: float = 20) -> None:
    with _running(argv, log, env) as proc, contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def _wait_listening(port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def _poke(port: int, host: str = "127.0.0.1") -> None:
    """Open a connection through a forward and wait for the far end's answer or close."""
    _wait_listening(port, host)
    with socket.create_connection((host, port), timeout=5) as sock, \
            contextlib.suppress(OSError):
        sock.recv(100)
    time.sleep(0.5)


def _socks_poke(port: int, target_port: int) -> None:
    _wait_listening(port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x05\x01\x00")
        sock.recv(2)
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1")
                     + target_port.to_bytes(2, "big"))
        with contextlib.suppress(OSError):
            sock.recv(10)
    time.sleep(0.5)


def _hold(port: int, hosts: tuple[str, ...] = ("127.0.0.1",)) -> list[socket.socket]:
    held = []
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, port))
        sock.listen(1)
        held.append(sock)
    return held


class Recorder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.client = ClientIdentity(root / "client")
        self.sshd = Sshd(root / "sshd", self.client).start()
        self.servers = [self.sshd]

    def server(self, name: str, **config: str) -> Sshd:
        server = Sshd(self.root / name, self.client, extra_config=config).start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()

    def profile(self, name: str, *forwards: Forward, server: Sshd | None = None,
                **fields: object) -> Profile:
        server = server or self.sshd
        base = Profile(name=name, host="127.0.0.1", port=server.port, user=server.user,
                       ssh_config_file=str(self.client.ssh_config), forwards=forwards)
        return replace(base, **fields)  # type: ignore[arg-type]

    def ssh(self, case: str, profile: Profile, then: Callable[[subprocess.Popen[bytes]], None]
            | None = None, config: Path | None = None) -> None:
        log = OUT / f"{case}.log"
        log.unlink(missing_ok=True)
        if config is not None:
            profile = replace(profile, ssh_config_file=str(config))
        argv = compile_ssh(profile, FACTS, spec=replace(SSH_SPEC, log_path=str(log)))
        if then is None:
            _run_to_exit(argv, log)
        else:
            with _running(argv, log) as proc:
                then(proc)
        _save_profile(case, profile)
        print(f"recorded {case}: {log.stat().st_size} bytes")


def local(port: int, to: str) -> Forward:
    host, _, target_port = to.rpartition(":")
    return Forward(ForwardType.LOCAL, TcpAddress(None, port), TcpAddress(host, int(target_port)))


def remote(port: int, to: str) -> Forward:
    host, _, target_port = to.rpartition(":")
    return Forward(ForwardType.REMOTE, TcpAddress(None, port), TcpAddress(host, int(target_port)))


def dynamic(port: int) -> Forward:
    return Forward(ForwardType.DYNAMIC, TcpAddress(None, port))


def record_ssh(rec: Recorder) -> None:
    sshd = rec.sshd
    closed = free_port()

    # Host key unknown: a client config whose known_hosts is empty.
    stranger = ClientIdentity(rec.root / "stranger")
    stranger.key.unlink()
    shutil.copy(rec.client.key, stranger.key)
    rec.ssh("ssh_host_key_unknown", rec.profile("db", local(free_port(), "127.0.0.1:5432")),
            config=stranger.ssh_config)

    # Host key changed: known_hosts holds another key for the same [host]:port.
    changed = ClientIdentity(rec.root / "changed")
    shutil.copy(rec.client.key, changed.key)
    other_key = rec.root / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    changed.trust("127.0.0.1", sshd.port, other_key.with_suffix(".pub").read_text())
    rec.ssh("ssh_host_key_changed", rec.profile("db", local(free_port(), "127.0.0.1:5432")),
            config=changed.ssh_config)

    # Authentication: a key the server does not know, with the right known_hosts.
    wrong = ClientIdentity(rec.root / "wrongkey")
    shutil.copy(rec.client.known_hosts, wrong.known_hosts)
    rec.ssh("ssh_auth_failed", rec.profile("db", local(free_port(), "127.0.0.1:5432")),
            config=wrong.ssh_config)

    rec.ssh("ssh_connection_refused",
            rec.profile("db", local(free_port(), "127.0.0.1:5432"), port=closed))
    rec.ssh("ssh_name_not_resolved",
            rec.profile("db", local(free_port(), "127.0.0.1:5432"), host="nonexistent.invalid"))
    rec.ssh("ssh_banner_timeout",
            rec.profile("db", local(free_port(), "127.0.0.1:5432"), host="240.0.0.1", port=22))

    # Local port taken on 127.0.0.1 only: the explicit per-family bind makes ssh fail.
    taken = free_port()
    held = _hold(taken)
    try:
        rec.ssh("ssh_local_port_taken", rec.profile("db", local(taken, "127.0.0.1:5432")))
    finally:
        for sock in held:
            sock.close()

    # Remote port taken on the server (same machine here), in both families.
    remote_taken = free_port()
    held = _hold(remote_taken, ("127.0.0.1", "::1"))
    try:
        rec.ssh("ssh_remote_port_taken",
                rec.profile("back", remote(remote_taken, f"127.0.0.1:{free_port()}")))
    finally:
        for sock in held:
            sock.close()

    # Target refused: the tunnel host cannot connect to the forward's destination.
    listen = free_port()
    rec.ssh("ssh_target_refused", rec.profile("db", local(listen, f"127.0.0.1:{closed}")),
            then=lambda _p: _poke(listen))

    # Jump host that cannot reach the next hop.
    jump = Hop("127.0.0.1", sshd.user, sshd.port)
    rec.ssh("ssh_jump_cannot_reach",
            rec.profile("db", local(free_port(), "127.0.0.1:5432"), port=closed, jump=(jump,)))
    # Jump host that refuses us (closed port on the first hop).
    rec.ssh("ssh_jump_refused",
            rec.profile("db", local(free_port(), "127.0.0.1:5432"),
                        jump=(Hop("127.0.0.1", sshd.user, closed),)))

    # Forwarding disabled on the server.
    no_fwd = rec.server("nofwd", AllowTcpForwarding="no")
    listen = free_port()
    rec.ssh("ssh_forwarding_disabled_local",
            rec.profile("db", local(listen, f"127.0.0.1:{sshd.port}"), server=no_fwd),
            then=lambda _p: _poke(listen))
    rec.ssh("ssh_forwarding_disabled_remote",
            rec.profile("back", remote(free_port(), f"127.0.0.1:{free_port()}"), server=no_fwd))
    socks = free_port()
    rec.ssh("ssh_forwarding_disabled_dynamic", rec.profile("proxy", dynamic(socks), server=no_fwd),
            then=lambda _p: _socks_poke(socks, sshd.port))
    remote_only = rec.server("remoteonly", AllowTcpForwarding="remote")
    listen = free_port()
    rec.ssh("ssh_forwarding_remote_only",
            rec.profile("db", local(listen, f"127.0.0.1:{sshd.port}"), server=remote_only),
            then=lambda _p: _poke(listen))


def record_closed(rec: Recorder) -> None:
    """The tunnel host goes away under a running tunnel."""
    sshd = rec.sshd
    doomed = rec.server("doomed")
    listen = free_port()

    def _kill_server(_proc: subprocess.Popen[bytes]) -> None:
        _wait_listening(listen)
        time.sleep(0.5)
        # The per-connection sshd child outlives its parent's SIGTERM: kill it like a crash.
        import psutil

        assert doomed.process is not None
        for child in psutil.Process(doomed.process.pid).children(recursive=True):
            child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            _proc.wait(10)

    rec.ssh("ssh_closed_by_remote",
            rec.profile("db", local(listen, f"127.0.0.1:{sshd.port}"), server=doomed),
            then=_kill_server)


def record_netns(rec: Recorder) -> None:
    """Connect timeout and unreachable network, in a throwaway network namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("skipping network-namespace cases (need root and iproute2)")
        return
    ns = f"swrec{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def in_ns(*cmd: str) -> None:
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)

        in_ns("ip", "link", "set", "lo", "up")
        # A veth peer without an address drops every packet: a SYN to 10.77.0.2 (its MAC
        # pinned, so no ARP failure) is never answered.
        in_ns("ip", "link", "add", "swa", "type", "veth", "peer", "name", "swb")
        in_ns("ip", "addr", "add", "10.77.0.1/24", "dev", "swa")
        in_ns("ip", "link", "set", "swa", "up")
        in_ns("ip", "link", "set", "swb", "up")
        in_ns("ip", "neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:77:02", "dev", "swa",
              "nud", "permanent")
        in_ns("ip", "route", "add", "unreachable", "10.88.0.0/24")
        cases = (("ssh_timed_out", "10.77.0.2"), ("ssh_network_unreachable", "10.99.0.1"),
                 ("ssh_no_route", "10.88.0.1"))
        for case, host in cases:
            log = OUT / f"{case}.log"
            log.unlink(missing_ok=True)
            profile = rec.profile("db", local(free_port(), "127.0.0.1:5432"), host=host, port=22)
            argv = compile_ssh(profile, FACTS, spec=replace(SSH_SPEC, log_path=str(log)))
            _run_to_exit(["ip", "netns", "exec", ns, *argv], log)
            _save_profile(case, profile)
            print(f"recorded {case}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _fingerprint(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_file)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def record_plink(rec: Recorder) -> None:
    if shutil.which("plink") is None or shutil.which("puttygen") is None:
        print("skipping plink cases (apt-get install putty-tools)")
        return
    sshd = rec.sshd
    home = rec.root / "plinkhome"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    ppk = rec.root / "client.ppk"
    subprocess.run(["puttygen", str(rec.client.key), "-O", "private", "-o", str(ppk)], check=True)
    other = rec.root / "other_client"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    other_ppk = rec.root / "other.ppk"
    subprocess.run(["puttygen", str(other), "-O", "private", "-o", str(other_ppk)], check=True)
    pinned = HostKeyPolicy(HostKeyMode.PINNED, _fingerprint(sshd.host_key.with_suffix(".pub")))
    other_host = rec.root / "plink_other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_host)],
                   check=True)
    wrong_pin = HostKeyPolicy(HostKeyMode.PINNED, _fingerprint(other_host.with_suffix(".pub")))
    closed = free_port()

    def plink(case: str, profile: Profile,
              then: Callable[[subprocess.Popen[bytes]], None] | None = None) -> None:
        log = OUT / f"{case}.log"
        log.unlink(missing_ok=True)
        profile = replace(profile, ssh_config_file=None, client=Client.PLINK)
        argv = compile_plink(profile, FACTS, spec=LaunchSpec())
        if then is None:
            _run_to_exit(argv, log, env)
        else:
            with _running(argv, log, env) as proc:
                then(proc)
        _save_profile(case, profile)
        print(f"recorded {case}: {log.stat().st_size} bytes")

    def prof(*forwards: Forward, **fields: object) -> Profile:
        settings: dict[str, object] = {"identity_file": str(ppk), "host_key": pinned, **fields}
        return replace(rec.profile("db", *forwards), **settings)  # type: ignore[arg-type]

    fwd = local(free_port(), "127.0.0.1:5432")
    plink("plink_host_key_unknown", prof(fwd, host_key=HostKeyPolicy()))
    plink("plink_host_key_changed", prof(fwd, host_key=wrong_pin))
    plink("plink_auth_failed", prof(fwd, identity_file=str(other_ppk)))
    plink("plink_connection_refused", prof(fwd, port=closed))
    plink("plink_name_not_resolved", prof(fwd, host="nonexistent.invalid"))
    taken = free_port()
    held = _hold(taken)
    try:
        # plink keeps running when a local forward fails: stop it once the message is out.
        plink("plink_local_port_taken", prof(local(taken, "127.0.0.1:5432")),
              then=lambda _p: time.sleep(3))
    finally:
        for sock in held:
            sock.close()
    remote_taken = free_port()
    held = _hold(remote_taken, ("127.0.0.1", "::1"))
    try:
        plink("plink_remote_port_taken",
              prof(remote(remote_taken, f"127.0.0.1:{free_port()}")),
              then=lambda _p: time.sleep(3))
    finally:
        for sock in held:
            sock.close()
    listen = free_port()
    # An explicit 127.0.0.1 listen: plink 0.78 reports the [::1] twin of a forward as "in use".
    only_v4 = Forward(ForwardType.LOCAL, TcpAddress("127.0.0.1", listen),
                      TcpAddress("127.0.0.1", closed))
    plink("plink_target_refused", prof(only_v4),
          then=lambda _p: _poke(listen))
    # No plink jump case: plink connects to a loopback destination directly, ignoring
    # -proxycmd (PuTTY does not proxy local-host connections by default).



def record_policies(rec: Recorder) -> None:
    """Each sshd forwarding restriction, so the classifier reads what sshd really sends."""
    sshd = rec.sshd
    permit_open = rec.server("permitopen", PermitOpen=f"127.0.0.1:{sshd.port}")
    listen = free_port()
    rec.ssh("ssh_policy_permitopen_local",
            rec.profile("db", local(listen, f"127.0.0.1:{free_port()}"), server=permit_open),
            then=lambda _p: _poke(listen))
    socks = free_port()
    rec.ssh("ssh_policy_permitopen_dynamic", rec.profile("proxy", dynamic(socks),
                                                         server=permit_open),
            then=lambda _p: _socks_poke(socks, free_port()))
    allowed = free_port()
    permit_listen = rec.server("permitlisten", PermitListen=f"localhost:{allowed}")
    rec.ssh("ssh_policy_permitlisten_remote",
            rec.profile("back", remote(free_port(), f"127.0.0.1:{free_port()}"),
                        server=permit_listen))
    disabled = rec.server("disabled", DisableForwarding="yes")
    listen = free_port()
    rec.ssh("ssh_policy_disableforwarding_local",
            rec.profile("db", local(listen, f"127.0.0.1:{sshd.port}"), server=disabled),
            then=lambda _p: _poke(listen))
    rec.ssh("ssh_policy_disableforwarding_remote",
            rec.profile("back", remote(free_port(), f"127.0.0.1:{free_port()}"),
                        server=disabled))
    local_only = rec.server("localonly", AllowTcpForwarding="local")
    rec.ssh("ssh_policy_local_only_remote",
            rec.profile("back", remote(free_port(), f"127.0.0.1:{free_port()}"),
                        server=local_only))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sshwrap-record-") as tmp:
        rec = Recorder(Path(tmp))
        try:
            only = set(sys.argv[1:])
            for step in (record_ssh, record_closed, record_netns, record_plink, record_policies):
                if not only or step.__name__ in only:
                    step(rec)
        finally:
            rec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
