"""Remote forwards proven from the far side: a connection made on the tunnel host, by its own
sshd, to every address the server may have bound, must arrive at this tunnel.

The probe is a ``direct-tcpip`` channel opened over the tunnel's own connection: its client
runs as a ControlMaster on a private control socket, and ``ssh -S CONTROL -W ADDR:PORT``
asks it for the channel (no new login, no prompt, through the jump hosts already there).
The tunnel's log says where the connection went (core/diagnose/farside.py). Every address of
a forward is probed at once: the proof costs one round trip to the tunnel host.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sshwrap.core.diagnose.farside import AddressProof, Outcome, judge, probe_addresses, verdict
from sshwrap.core.model import Client, Profile
from sshwrap.errors import ForwardingFailed
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import ExpectedForward

#: The longest a proof waits for the tunnel host's answers.
PROOF_WAIT = 10.0
#: After sshd confirmed a probe's channel, how long its arrival may take to reach the log
#: (sshd sends the forwarded connection before the confirmation: this is a margin only).
ARRIVAL_GRACE = 0.3
#: The mux client's words (ssh -v) once the master's channel is open, and when it was refused.
OPENED = "mux_client_request_stdio_fwd: master session id:"
REFUSED = "Stdio forwarding request failed:"
PLINK_NOT_PROVEN = ("far side not proven: plink has no connection sharing to open the "
                    "probe's channel over")


def control_socket(paths: StatePaths, name: str) -> Path:
    """The private control socket of a tunnel's own client (in the folder of the shared
    connections' sockets, as short a name as theirs)."""
    from sshwrap.runtime.supervise.shared import control_dir
    from sshwrap.runtime.system.rendezvous import KEY_LENGTH

    digest = hashlib.sha256(name.encode()).hexdigest()[:KEY_LENGTH - 1]
    return control_dir(paths) / f"t{digest}"


def clear_stale(control: Path) -> None:
    """Remove a control socket left by a client that was killed: ssh would not replace it,
    and would run without a master (and the proof without its channel)."""
    import stat

    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(control).st_mode):
            control.unlink()


def own_control(paths: StatePaths, profile: Profile) -> Path | None:
    """The control socket of a tunnel's own ssh client (a ControlMaster, so that its remote
    forwards are proven over its own connection); None for plink, which has none."""
    if profile.client is not Client.SSH:
        return None
    control = control_socket(paths, profile.name)
    clear_stale(control)
    return control


def probe_argv(control: Path, address: str, port: int) -> list[str]:
    """``ssh -S CONTROL -W ADDR:PORT``: the master opens the channel; without a master this
    connects nowhere (ProxyCommand false), and reads no config."""
    from sshwrap.runtime.client.launch import find_program

    target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return [find_program(Client.SSH), "-v", "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", "ProxyCommand=false", "-S", str(control), "-W", target, "--", "far-side"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read(path: Path, offset: int) -> str:
    with contextlib.suppress(OSError), path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace").replace("\r", "")
    return ""


class _Probe:
    """One ``-W`` client and what it said."""

    def __init__(self, control: Path, address: str, port: int) -> None:
        from sshwrap.runtime.system.detach import client_environment

        self.address, self.port = address, port
        self.opened: bool | None = None
        self.said = ""
        self._buffer = b""
        # stdin stays open (nothing is sent) until the verdict: the channel is not closed
        # before sshd has made the connection.
        self.popen = subprocess.Popen(probe_argv(control, address, port),
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, env=client_environment())

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = rest
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if OPENED in line:
                self.opened = True
            elif REFUSED in line:
                self.opened, self.said = False, line.split(REFUSED, 1)[1].strip()
            elif line and not line.startswith(("debug", "OpenSSH_")) and not self.said:
                self.said = line

    def ended(self) -> None:
        if self.opened is None:
            self.opened = False
            self.said = self.said or "no control socket answered"

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.popen.stdin is not None:
                self.popen.stdin.close()
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stderr is not None:
            self.popen.stderr.close()


def probe(control: Path, log_path: Path, targets: Sequence[tuple[str, int]], *,
          wait: float = PROOF_WAIT) -> list[AddressProof]:
    """Open a channel to every ``(address, port)`` at once over the master at ``control``;
    each one's verdict, from the master's log at ``log_path``."""
    if not control.exists():
        return [AddressProof(a, p, Outcome.UNKNOWN, "the tunnel's client has no control socket")
                for a, p in targets]
    offset = _size(log_path)
    probes = [_Probe(control, address, port) for address, port in targets]
    deadline = time.monotonic() + min(wait, PROOF_WAIT)
    try:
        with selectors.DefaultSelector() as selector:
            for each in probes:
                assert each.popen.stderr is not None  # noqa: S101 - made with a pipe
                selector.register(each.popen.stderr, selectors.EVENT_READ, each)
            while selector.get_map() and time.monotonic() < deadline:
                if all(p.opened is not None for p in probes):
                    break
                for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                    owner: _Probe = key.data
                    chunk = os.read(key.fd, 4096)
                    if chunk:
                        owner.feed(chunk)
                    else:
                        selector.unregister(key.fileobj)
                        owner.ended()
        text = _read(log_path, offset)
        grace = min(deadline, time.monotonic() + ARRIVAL_GRACE)
        while any(p.opened and not _arrived(text, p) for p in probes) \
                and time.monotonic() < grace:
            time.sleep(0.01)
            text = _read(log_path, offset)
    finally:
        for each in probes:
            each.stop()
    return [judge(p.address, p.port, opened=p.opened, log_text=text, said=p.said)
            for p in probes]


def _arrived(text: str, probe: _Probe) -> bool:
    from sshwrap.core.diagnose.farside import arrived

    return arrived(text, probe.port, probe.address)


def targets_of(forward: ExpectedForward) -> list[tuple[str, int]]:
    """Every address a remote TCP forward may be bound on, with its port."""
    if forward.type != "remote" or forward.port is None:
        return []
    return [(address, forward.port) for address in probe_addresses(forward.host)]


def prove_forwards(profile: Profile, forwards: Sequence[ExpectedForward], control: Path | None,
                   log_path: Path, *, wait: float = PROOF_WAIT,
                   ) -> tuple[ExpectedForward, ...]:
    """``forwards`` with each remote TCP forward's proof in ``far_side``; raise
    ForwardingFailed naming the address when another program holds one. All are probed at
    once: one round trip. A plink tunnel has no master to ask: said so, never passed."""
    remote = [f for f in forwards if targets_of(f)]
    if not remote:
        return tuple(forwards)
    if control is None:
        return tuple(replace(f, far_side=PLINK_NOT_PROVEN) if f in remote else f
                     for f in forwards)
    targets = [t for f in remote for t in targets_of(f)]
    results = probe(control, log_path, targets, wait=wait)
    proven: list[ExpectedForward] = []
    for forward in forwards:
        if forward not in remote:
            proven.append(forward)
            continue
        mine = tuple(r for r in results if (r.address, r.port) in targets_of(forward))
        failed, detail = verdict(mine, profile.host)
        if failed:
            raise far_side_error(profile.name, forward, detail)
        proven.append(replace(forward, far_side=detail))
    return tuple(proven)


def far_side_error(name: str, forward: ExpectedForward, detail: str) -> ForwardingFailed:
    return ForwardingFailed(
        f"{name}: remote forward {forward.listen} -> {forward.to}: {detail}",
        hint=f"stop the program that holds port {forward.port} on the tunnel host (see "
             "'ss -ltnp' there), or choose another listen port")


def control_of(argv: Sequence[str]) -> Path | None:
    """The control socket a recorded client listens on (its ``-S``), None without one."""
    for flag, value in itertools.pairwise(argv):
        if flag == "--":
            break
        if flag == "-S":
            return Path(value)
    return None


def check_forward(profile: Profile, forward: ExpectedForward, control: Path | None,
                  log_path: Path) -> tuple[list[AddressProof], bool, str]:
    """A running tunnel's remote forward proven now (``check``): each address's verdict,
    whether it failed, and the words for it."""
    if control is None:
        return [], False, "far side not proven: the tunnel's client has no control socket " \
                          "(plink, or started by an older sshwrap)"
    proofs = probe(control, log_path, targets_of(forward))
    failed, detail = verdict(tuple(proofs), profile.host)
    return proofs, failed, detail
