"""What a supervisor does with its client: start it, wait for it, stop it, say why it ended."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

from sshwrap.core.binds import HostFacts
from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.model import Profile
from sshwrap.runtime.client.auth import ClientStarter
from sshwrap.runtime.client.launch import Launched, stop_group
from sshwrap.runtime.client.questions import AskQuestion
from sshwrap.runtime.observe.verify import LogReader
from sshwrap.runtime.system import unixsock
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import TunnelRecord, state_errors

STOP_TIMEOUT = 5.0


class Stopping(BaseException):
    """Raised when a stop was asked (SIGTERM/SIGINT, or the resident supervisor's ``down``):
    unwind, stop the client, exit 0."""


class ClientOwner:
    """The client side of a supervisor, a tunnel's or a shared connection's master's; the
    restart loop around it is runtime/supervise/restart.py's."""

    name: str
    paths: StatePaths
    env: Mapping[str, str] | None
    record: TunnelRecord | None
    child: Launched | None
    _secret: str | None
    _starter: ClientStarter | None
    #: Answers the server's questions on the first start (the Python API's ``prompt=``);
    #: otherwise they go to the asker's terminal named in ``env``, if any.
    _ask: AskQuestion | None = None
    _stopping: bool
    _stop_requested: threading.Event
    _dropped: str | None

    def say(self, text: str) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask the loop, from another thread, to stop the client and end (as SIGTERM does)."""
        self._stop_requested.set()
        child = self.child
        # Wakes a loop blocked on the client (_stop_child finishes it); a reaped child's pid
        # may belong to another process already, and is left alone.
        if child is not None and child.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)

    # -- ended from another thread: a stop, or a connection that cannot survive ---------

    def client_pid(self) -> int | None:
        """The verified client's pid; None while starting or reconnecting."""
        child = self.child
        up = self.record is not None and self.record.verified
        return child.pid if child is not None and child.popen.returncode is None and up else None

    def drop_connection(self, reason: str) -> None:
        """End a client whose connection cannot survive (from another thread): the loop
        restarts it with no backoff, as soon as its first hop answers."""
        child = self.child
        if child is None or child.popen.returncode is not None:
            return
        self._dropped = reason
        self.say(f"{reason}: restarting the client")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)

    def _check_stop(self) -> None:
        if self._stop_requested.is_set():
            self._stopping = True
            raise Stopping("stop requested")

    def sleep(self, seconds: float) -> None:
        """Sleep, but end the loop at once when a stop is asked."""
        if self._stop_requested.wait(seconds):
            self._check_stop()

    def spawn_client(self, profile: Profile, facts: HostFacts, spec: LaunchSpec,
                     log_path: Path) -> Launched:
        """Start the client, with the secret (if any) served through sshwrap's askpass helper
        and a pinned host key in place, compiled once from ``spec``; the same starter serves
        every restart."""
        self._check_stop()
        unixsock.clear_stale_listeners(profile)  # a dead client's socket file; never a file
        if self._starter is None:
            if self._secret is None and profile.password_keyring:
                # Run by a systemd unit or a LaunchAgent, nobody handed a password over.
                from sshwrap.runtime.client.keyring_secret import keyring_password

                self._secret = keyring_password(profile.name, profile.source or profile.name)
            self._starter = ClientStarter(self._secret, self.paths.root, base_env=self.env,
                                          ask=self._ask)
        # Its config file, its log and its askpass socket are written in the state dir: one
        # that cannot take them fails the attempt as StateUnusable, which is retried.
        with state_errors(self.paths):
            self.child = self._starter.start(self.name, profile, facts, spec, log_path,
                                             owned_by_parent=True)
        self._check_stop()  # asked while it was being spawned: request_stop saw no child
        return self.child

    def asking_time(self) -> float:
        """Seconds the current start has waited for a person's answers."""
        return self._starter.asking_time() if self._starter is not None else 0.0

    def _wait_client(self, launched: Launched) -> int:
        """Block until the verified client ends; its exit status."""
        returncode = launched.popen.wait()
        self._check_stop()
        self.child = None
        return returncode

    def _settle_credentials(self) -> None:
        """Close the askpass socket of the last start once its client is verified or gone."""
        if self._starter is not None:
            self._starter.settle()

    def _stop_child(self) -> None:
        self._settle_credentials()
        if self.child is not None:
            # Our own child: until we reap it its pid cannot be reused, so signalling is safe.
            stop_group(self.child.pid, timeout=STOP_TIMEOUT)
            self.child.popen.poll()
            self.child = None

    def _failure_reason(self, launched: Launched, returncode: int, profile: Profile) -> str:
        from sshwrap.core.diagnose import diagnose_log

        text = LogReader(launched.log_path, launched.log_offset).read()
        diagnosis = diagnose_log(text, profile)
        if diagnosis is not None:
            return diagnosis.message
        if returncode < 0:
            return f"the client (pid {launched.pid}) was killed by " \
                   f"{signal.Signals(-returncode).name}"
        return f"the client (pid {launched.pid}) exited with status {returncode}"
