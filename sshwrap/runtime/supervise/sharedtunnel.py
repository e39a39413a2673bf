"""A tunnel on a shared connection: its forwards added to the master, watched, taken off."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from sshwrap.core.model import Client, Profile
from sshwrap.errors import ForwardingFailed, NotReady, SshwrapError
from sshwrap.runtime.observe.verify import ForwardCheck, ReadyWatch, check_forwards
from sshwrap.runtime.supervise.farside import prove_forwards
from sshwrap.runtime.supervise.hosting import STOPPING, Hosting, drop_reason, user_forwards
from sshwrap.runtime.supervise.restart import Ended, Phase, ProfileAttempts
from sshwrap.runtime.supervise.shared import (
    POLL_INTERVAL,
    VERIFY_WAIT,
    WATCH_INTERVAL,
    cancel_forwards,
    connection_key,
    control_path,
    ensure_master,
    forward_args,
    master_name,
    master_paths,
    mux,
    release,
)
from sshwrap.runtime.system import listeners, state, unixsock
from sshwrap.runtime.system.identity import Identity
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import ExpectedForward, Mode, TunnelRecord


class Host(Protocol):
    """What a shared tunnel needs of the supervisor that runs it (supervise/supervisor.py)."""

    name: str
    paths: StatePaths
    record: TunnelRecord | None
    on_stop: Callable[[], None] | None
    mode: Mode
    #: The environment of the ``up`` that started the tunnel: its master starts from it.
    env: Mapping[str, str] | None
    #: The engine's shared connections, when the engine runs it.
    hosting: Hosting | None
    #: The listener reads it shares (the engine's, when the engine runs it).
    ready: ReadyWatch

    def _update(self, **changes: object) -> None: ...
    def begin(self, fresh: TunnelRecord, **changes: object) -> None: ...
    def say(self, text: str) -> None: ...
    def report_first(self, error: SshwrapError | None) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def _identity(self) -> Identity: ...
    @property
    def secret(self) -> str | None: ...



def _size(path: Path | None) -> int:
    from sshwrap.runtime.system.logs import end_offset

    return end_offset(path) if path is not None else 0  # logical, as LogReader reads it


def add_forwards(name: str, control: Path, forwards: Sequence[ExpectedForward],
                 master_pid: int, *, profile: Profile | None = None,
                 master_log: Path | None = None, hosting: Hosting | None = None) -> None:
    """``-O forward`` each forward; the first refusal raises the error that explains it (for a
    remote forward, from what the master's log says of it, as a tunnel of its own would)."""
    unixsock.clear_stale_paths(f.path for f in forwards if f.type == "local")
    for forward in forwards:
        offset = _size(master_log)
        result = mux(control, "forward", forward_args(forward), hosting=hosting)
        if result.returncode == 0:
            continue
        from sshwrap.runtime.observe.verify import LogReader, port_taken_error, refused_error

        if forward.type == "remote":
            said = LogReader(master_log, offset).read() if master_log is not None else ""
            raise refused_error(name, ForwardCheck(forward, False, "", refused=True),
                                said, profile)
        check = check_forwards([forward], master_pid, listeners.listening_sockets(), None)[0]
        if check.holder is not None or check.blocked:
            raise port_taken_error(name, check)
        why = result.stderr.strip().splitlines()[-1:] or ["no reason given"]
        raise ForwardingFailed(f"{name}: the shared connection did not add {forward.type} "
                               f"forward {forward.listen}: {why[0]}")


def verify_forwards(name: str, forwards: Sequence[ExpectedForward], master_pid: int,
                    ready: ReadyWatch | None = None) -> None:
    """Every local and dynamic listener exists and belongs to the master (remote forwards
    were confirmed by ``-O forward``'s exit status: the master waits for the server)."""
    from sshwrap.runtime.observe.verify import ListenerView, port_taken_error

    deadline = time.monotonic() + VERIFY_WAIT
    while True:
        # sock_diag and the master's own sockets; a scan of every process only when one is
        # not found healthy (fifty tunnels joining a master would otherwise scan fifty times)
        checks = ListenerView(ready).check(forwards, master_pid)
        bad = [c for c in checks if not c.healthy]
        if not bad:
            return
        if bad[0].holder is not None:
            raise port_taken_error(name, bad[0])
        if time.monotonic() >= deadline:
            raise ForwardingFailed(f"{name}: {bad[0].forward.listen}: {bad[0].detail} after "
                                   "it was added to the shared connection")
        time.sleep(POLL_INTERVAL)


def conflicting_user(paths: StatePaths, name: str, key: str,
                     forwards: Sequence[ExpectedForward],
                     hosting: Hosting | None = None) -> tuple[str, str] | None:
    """Another tunnel on the same master with a forward on the same address: the master
    would accept the duplicate silently, and that tunnel's ``down`` would cut this one."""
    mine = {(f.type == "remote", f.listen) for f in forwards}
    for other, theirs in user_forwards(paths, key, besides=name, hosting=hosting).items():
        for forward in theirs:
            if (forward.type == "remote", forward.listen) in mine:
                return other, forward.listen
    return None


class SharedTunnel(ProfileAttempts):
    """What the restart loop runs for a tunnel whose forwards ride on a shared master."""

    def __init__(self, supervisor: Host, profile: Profile, digest: str,
                 forwards: tuple[ExpectedForward, ...]) -> None:
        self.sup = supervisor
        self.profile = profile
        self.digest = digest
        self.forwards = forwards
        self.key = connection_key(profile)
        self.paths = supervisor.paths
        hosting = supervisor.hosting
        self.hosting = hosting if hosting is not None and hosting.serves(self.paths) else None
        self.name = supervisor.name
        #: True while this tunnel's forwards may be on the master (from the first -O forward).
        self.added = False
        self.master: TunnelRecord | None = None
        #: The forwards with their far-side proofs, as the last attach found them.
        self.proven = forwards
        self.say, self.sleep, self.update = supervisor.say, supervisor.sleep, supervisor._update
        pid, create_time, own_argv = supervisor._identity()
        self.fresh = TunnelRecord(
            name=self.name, pid=0, create_time=0.0, argv=(), profile_hash=self.digest,
            client=Client.SSH.value, started_at=time.time(), forwards=self.forwards,
            log_path=str(self.paths.log(self.name)), supervisor_pid=pid,
            supervisor_create_time=create_time, supervisor_argv=own_argv, shared=self.key,
            mode=supervisor.mode.value)
        supervisor.on_stop = self.leave

    def leave(self) -> None:
        """On stop or failure: off the master (its forwards cancelled; the master stopped if
        last)."""
        if self.hosting is not None:
            self.hosting.detach(self.key, self.name)
        if self.sup.record is not None:
            with contextlib.suppress(SshwrapError):
                self.sup._update(phase=STOPPING)
                release(self.paths, self.sup.record, cancel=self.added, hosting=self.hosting)

    def start(self, phase: Phase, wait: float) -> Mapping[str, object]:
        # Registered before the master is asked for: the master's supervisor counts it.
        self.sup.begin(self.fresh, phase=phase.value, verified=False, next_retry=None)
        if self.hosting is not None:
            self.hosting.attach(self.key, self.name, self.forwards)
        master = self.master = self._attach(phase is Phase.STARTING, wait)
        return {"pid": master.pid, "create_time": master.create_time, "argv": master.argv,
                "started_at": time.time(), "forwards": self.proven}

    def watch(self) -> Ended:
        master = self.master
        pid = master.pid if master is not None else 0
        while master is not None and state.live_process(master) is not None:
            self.sup.sleep(WATCH_INTERVAL)
        # Ended after a network change (the engine's watch): that is the reason to tell.
        dropped = drop_reason(self.hosting, self.paths, self.key, pid)
        reason = dropped or f"the shared connection (master pid {pid}) ended"
        self.sup.say(reason)
        # No backoff here: the master's supervisor paces the restarts of the master.
        return Ended(reason, dropped=dropped is not None, paced=True)

    def stop(self) -> None:
        """Forwards added by an attempt that failed after all (it could not be recorded up)
        are taken off; one that failed to add them has done so already (``_attach``)."""
        if self.added:
            cancel_forwards(control_path(self.paths, self.key), self.forwards, self.hosting)
            self.added = False

    def verified(self) -> None:
        if self.master is not None:
            self.sup.say(f"up on the shared connection (master pid {self.master.pid})")
        self.sup.report_first(None)

    def wanted(self) -> bool:
        return True

    def _attach(self, first: bool, wait: float) -> TunnelRecord:
        """The master up (started if need be), this tunnel's forwards added and verified."""
        if first:
            clash = conflicting_user(self.paths, self.name, self.key, self.forwards,
                                     self.hosting)
            if clash is not None:
                raise ForwardingFailed(
                    f"{self.name}: {clash[1]} is already forwarded by tunnel {clash[0]} on the "
                    "same shared connection", hint="choose another listen address or port")
        try:
            master = ensure_master(self.paths, self.profile, self.key, wait=wait,
                                   secret=self.sup.secret, env=self.sup.env,
                                   hosting=self.hosting)
        except NotReady:  # in the words of a tunnel of its own: what is missing, last words
            from sshwrap.runtime.observe.verify import LogReader, not_ready_error

            missing = [ForwardCheck(f, False, "waiting for the server" if f.type == "remote"
                                    else "not listening") for f in self.forwards]
            log = master_paths(self.paths).log(master_name(self.key))
            raise not_ready_error(self.name, wait, missing, LogReader(log, 0).read()) \
                from None
        control = control_path(self.paths, self.key)
        master_log = master_paths(self.paths).log(master_name(self.key))
        self.added = True
        try:
            add_forwards(self.name, control, self.forwards, master.pid, profile=self.profile,
                         master_log=master_log, hosting=self.hosting)
            verify_forwards(self.name, self.forwards, master.pid, self.sup.ready)
            # The master's own connection opens the probes: its remote forwards proven too.
            self.proven = prove_forwards(self.profile, self.forwards, control, master_log)
        except SshwrapError:
            cancel_forwards(control, self.forwards, self.hosting)
            self.added = False
            raise
        return master

