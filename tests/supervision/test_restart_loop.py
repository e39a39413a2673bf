"""The one restart loop's policy, on attempts played from a script (what a tunnel's client, a
shared tunnel and a master each do is tested against a real sshd elsewhere)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest

from sshwrap.core.model import RestartPolicy
from sshwrap.errors import AuthFailed, ConnectionFailed, ForwardingFailed, SshwrapError
from sshwrap.runtime.supervise.restart import REMOTE_HELD_HINT, Ended, Phase, RestartLoop


@pytest.fixture
def hop() -> Iterator[tuple[str, int]]:
    """A first hop that answers: backoffs are waited out in full, no longer."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield "127.0.0.1", server.getsockname()[1]


@dataclass
class Script:
    """Each start fails with the next error (None: verified); each watch ends as told."""

    first_hop: tuple[str, int]
    starts: list[SshwrapError | None]
    ends: list[Ended | None] = field(default_factory=list)
    policy: RestartPolicy = RestartPolicy.ALWAYS
    wanted_waits: int = 99
    name: str = "scripted"
    phases: list[str] = field(default_factory=list)
    updates: list[dict[str, object]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    stopped: int = 0

    def hop(self) -> tuple[str, int]:
        return self.first_hop

    def start(self, phase: Phase, wait: float) -> Mapping[str, object]:
        self.phases.append(phase.value)
        error = self.starts.pop(0)
        if error is not None:
            raise error
        return {"pid": len(self.phases)}

    def watch(self) -> Ended | None:
        return self.ends.pop(0)

    def stop(self) -> None:
        self.stopped += 1

    def update(self, **changes: object) -> None:
        self.updates.append({**changes, "at": time.time()})

    def say(self, text: str) -> None:
        self.said.append(text)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def verified(self) -> None:
        pass

    def wanted(self) -> bool:
        self.wanted_waits -= 1
        return self.wanted_waits >= 0

    def reconnecting(self) -> list[dict[str, object]]:
        return [u for u in self.updates if u.get("phase") == "reconnecting"]


def test_a_first_failure_is_reported_not_retried(hop: tuple[str, int]) -> None:
    script = Script(hop, [ConnectionFailed("no route")])
    with pytest.raises(ConnectionFailed, match="no route"):
        RestartLoop(script, first_wait=1.0, retry_first=False).run()
    assert script.phases == ["starting"] and script.stopped == 1 and not script.reconnecting()


def test_in_the_foreground_a_first_failure_is_retried_until_up(hop: tuple[str, int]) -> None:
    ended = Ended("the client exited with status 0", status=0)
    script = Script(hop, [ConnectionFailed("no route"), None], [ended],
                    policy=RestartPolicy.ON_FAILURE)
    assert RestartLoop(script, first_wait=1.0, retry_first=True).run() is ended
    assert script.phases == ["starting", "starting"]  # not up yet: still its first start
    assert script.reconnecting()[0]["last_failure"] == "no route"
    assert {"restarts": 1} in [{k: v for k, v in u.items() if k != "at"}
                               for u in script.updates]
    assert any(u.get("phase") == "up" and u.get("pid") == 2 for u in script.updates)


def test_a_fatal_failure_is_never_retried(hop: tuple[str, int]) -> None:
    script = Script(hop, [None, AuthFailed("denied")], [Ended("cut")])
    with pytest.raises(AuthFailed):
        RestartLoop(script, first_wait=1.0, retry_first=True).run()
    assert script.phases == ["starting", "reconnecting"]


@pytest.mark.parametrize("policy", [RestartPolicy.NO, RestartPolicy.ON_FAILURE])
def test_a_failed_end_is_kept_unless_the_policy_restarts(hop: tuple[str, int],
                                                          policy: RestartPolicy) -> None:
    script = Script(hop, [None, None], [Ended("cut", status=255), None], policy=policy)
    if policy is RestartPolicy.NO:
        with pytest.raises(ConnectionFailed, match="cut") as failure:
            RestartLoop(script, first_wait=1.0, retry_first=False).run()
        assert failure.value.hint == "sshwrap up scripted"
    else:
        assert RestartLoop(script, first_wait=1.0, retry_first=False).run() is None
        assert script.phases == ["starting", "reconnecting"]


def test_a_dropped_or_paced_end_restarts_without_backoff(hop: tuple[str, int]) -> None:
    ends: list[Ended | None] = [Ended("cut"), Ended("address gone", dropped=True),
                                Ended("master ended", paced=True), None]
    script = Script(hop, [None] * 4, ends)
    assert RestartLoop(script, first_wait=1.0, retry_first=False).run() is None
    waits = [float(str(u["next_retry"])) - float(str(u["at"])) for u in script.reconnecting()]
    assert waits[0] > 0.3 and waits[1] < 0.1 and waits[2] < 0.1, waits


def test_a_remote_port_still_held_is_retried_with_the_servers_hint(
        hop: tuple[str, int]) -> None:
    held = ForwardingFailed("web: the server refused remote forward 0.0.0.0:8080")
    script = Script(hop, [None, held, None], [Ended("cut"), None])
    assert RestartLoop(script, first_wait=1.0, retry_first=False).run() is None
    last = script.reconnecting()[-1]
    assert "still holds it from the previous session" in str(last["last_failure"])
    assert last["failure_hint"] == REMOTE_HELD_HINT


def test_what_nobody_wants_any_more_ends_after_its_wait(hop: tuple[str, int]) -> None:
    script = Script(hop, [None], [Ended("cut")], wanted_waits=0)
    assert RestartLoop(script, first_wait=1.0, retry_first=False).run() is None
    assert script.phases == ["starting"]
