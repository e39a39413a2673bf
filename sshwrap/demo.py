"""``sshwrap demo``: the whole job against a private sshd on loopback, then nothing left behind."""

from __future__ import annotations

import contextlib
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from sshwrap.errors import ExitCode, SshwrapError

DEMO_NAME = "demo"
GREETING = b"hello through the tunnel\n"


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt so that every ``finally`` runs."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def probe_banner(port: int, timeout: float = 5.0) -> tuple[str, str]:
    """Connect to 127.0.0.1:port, read the service's greeting and an echo of GREETING."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        banner = conn.recv(256)
        conn.sendall(GREETING)
        echoed = b""
        while len(echoed) < len(GREETING):
            chunk = conn.recv(256)
            if not chunk:
                break
            echoed += chunk
    return banner.decode(errors="replace").strip(), echoed.decode(errors="replace").strip()


def demo_profile(sshd_port: int, user: str, ssh_config: Path, listen: int, target: int) -> str:
    return (
        'description = "sshwrap demo: a local forward through a private sshd"\n'
        'host = "127.0.0.1"\n'
        f"port = {sshd_port}\n"
        f'user = "{user}"\n'
        f'ssh_config_file = "{ssh_config}"\n'
        "\n[[forward]]\n"
        'type = "local"\n'
        f"listen = {listen}\n"
        f'to = "127.0.0.1:{target}"\n'
        'probe = "banner"\n'
    )


def run_demo(say: Callable[[str], None], show: Callable[[object], None]) -> ExitCode:
    """Run the demo, telling the user each step; everything it starts is stopped at the end."""
    from sshwrap.runtime.engine import daemon
    from sshwrap.runtime.system.paths import StatePaths
    from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd, free_port
    from sshwrap.store import ProfileStore
    from sshwrap.usecases.up import down, status, up

    with tempfile.TemporaryDirectory(prefix="sshwrap-demo-") as tmp, _signals_interrupt():
        root = Path(tmp)
        client = ClientIdentity(root / "client")
        server = Sshd(root / "server", client)
        paths = StatePaths(root / "state")
        banner: BannerServer | None = None
        try:
            server.start()
            say(f"1. started a private sshd on 127.0.0.1:{server.port} with throwaway keys")
            banner = BannerServer().start()
            say(f"2. started a small service on 127.0.0.1:{banner.port} "
                "(it greets, then echoes)")
            profiles = root / "profiles"
            profiles.mkdir()
            listen = free_port()
            (profiles / f"{DEMO_NAME}.toml").write_text(
                demo_profile(server.port, server.user, client.ssh_config, listen, banner.port))
            store = ProfileStore((profiles,))
            say(f"3. sshwrap up {DEMO_NAME}: local {listen} -> 127.0.0.1:{banner.port} "
                "through the sshd")
            report = up(store, [DEMO_NAME], paths=paths)
            for outcome in report.outcomes:
                if outcome.error is not None:
                    raise outcome.error
            show(report)
            say("4. sshwrap status:")
            show(status(store, [DEMO_NAME], paths=paths))
            greeting, echoed = probe_banner(listen)
            say(f"5. probe through 127.0.0.1:{listen}: greeting {greeting!r}, echo {echoed!r}")
            ok = greeting.startswith("220") and echoed == GREETING.decode().strip()
            return ExitCode.OK if ok else ExitCode.UNHEALTHY
        except KeyboardInterrupt:
            say("interrupted: cleaning up")
            raise
        finally:
            with contextlib.suppress(SshwrapError):
                down([DEMO_NAME], paths=paths)
                daemon.shutdown(paths)  # the demo's own resident supervisor
            if banner is not None:
                banner.stop()
            server.stop()
            say("6. stopped the tunnel, the service and the sshd; removed the temporary files")
