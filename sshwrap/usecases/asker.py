"""The client of one ``up`` or ``restart`` the engine serves, as the engine sees it: progress
goes to it, and once it hangs up (Ctrl-C) the first attempts under way are stopped."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from sshwrap.runtime.observe.results import Action, TunnelsReport

if TYPE_CHECKING:
    from sshwrap.runtime.engine.resident import ResidentSupervisor
    from sshwrap.runtime.system.wire import Channel

#: How long the watch over an asker waits between looks (it is woken when the work is done,
#: and at once when the asker hangs up).
HANGUP_POLL = 1.0


class Asker:
    """The client of one up or restart, while its tunnels start: progress goes to it, and
    once it hangs up (Ctrl-C) the first attempts under way are stopped."""

    def __init__(self, channel: Channel, engine: ResidentSupervisor, *,
                 show_progress: bool) -> None:
        self.channel = channel
        self.engine = engine
        self.show_progress = show_progress
        self.starting: set[str] = set()  # names this request is starting (it holds their locks)
        self.hung_up = threading.Event()
        self._done = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="asker", daemon=True)

    def __enter__(self) -> Asker:
        self._watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        os.write(self._wake_write, b"x")
        self._watcher.join()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def progress(self, name: str, ready: int, total: int) -> None:
        if ready == 0:
            self.starting.add(name)
        if self.show_progress and not self.hung_up.is_set():
            try:
                self.channel.send({"progress": [name, ready, total]})
            except OSError:
                self.hung_up.set()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.channel.hung_up(HANGUP_POLL, self._wake_read) and not self._done.is_set():
                self.hung_up.set()
                for name in list(self.starting):
                    self.engine.stop(name)
                return

    def abandoned(self, report: TunnelsReport) -> list[str]:
        """The tunnels this request started that nobody waits for any more."""
        if not self.hung_up.is_set():
            return []
        return [o.name for o in report.outcomes
                if o.name in self.starting and o.action is Action.STARTED]

    def stop_abandoned(self, report: TunnelsReport) -> None:
        from sshwrap.usecases.down import stop_tunnel

        for name in self.abandoned(report):
            stop_tunnel(name, self.engine.paths, engine=self.engine.stop,
                        hosting=self.engine.hosting)
