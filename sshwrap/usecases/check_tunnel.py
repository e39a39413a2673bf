"""``check``'s tunnel steps: it runs, its forwards listen, and every far end answers now.

Log evidence is read from the offset where this check began: each probe's own lines are
its verdict; older failures are history and never fail the check.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sshwrap.core.diagnose import (
    ChannelFailure,
    FailureKind,
    channel_diagnosis,
    channel_failures,
    describe_channel,
    diagnose_log,
    log_lines,
    path_hops,
    reached_address,
)
from sshwrap.core.model import Forward, ForwardType, Probe, Profile, TcpAddress, UnixAddress
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.state import ExpectedForward, TunnelRecord
from sshwrap.usecases.check_gateway import diagnosis_segment
from sshwrap.usecases.check_steps import (
    CLIENT,
    GATEWAY,
    SERVER_POLICY,
    SERVER_SIDE,
    CheckStep,
    failed,
    passed,
    skipped,
)

if TYPE_CHECKING:
    from sshwrap.runtime.observe.forwards import ForwardCheck
    from sshwrap.runtime.observe.probes import ProbeResult


def _log_size(path: Path) -> int:
    from sshwrap.runtime.system.logs import end_offset

    return end_offset(path)


def _read_log(path: Path, start: int, end: int | None = None) -> str:
    from sshwrap.runtime.system.logs import read_text

    return read_text(path, start, end)  # offsets are logical: right across the log's cuts


def _probe_endpoint(listen: TcpAddress | UnixAddress) -> tuple[str, int] | str:
    if isinstance(listen, UnixAddress):
        return listen.path
    host = listen.host
    # A wildcard listen is probed on loopback; nothing is bound here.
    if host in (None, "localhost", "ip6-localhost", "0.0.0.0", "*", ""):  # noqa: S104
        return "127.0.0.1", listen.port
    if host == "::":
        return "::1", listen.port
    return host, listen.port


# -- not running: why the last start failed ------------------------------------------------


def _not_running(profile: Profile, record: TunnelRecord) -> CheckStep:
    from sshwrap.runtime.system.state import live_supervisor

    name = "tunnel running"
    text = _read_log(Path(record.log_path), record.log_offset)
    diagnosis = diagnose_log(text, profile) if text else None
    reason = record.last_failure or (diagnosis.message if diagnosis else "")
    hint = record.failure_hint or (diagnosis.hint if diagnosis else "")
    segment = diagnosis_segment(diagnosis, profile) if diagnosis else CLIENT
    if live_supervisor(record) is not None:
        state = "reconnecting" if record.phase == "reconnecting" else record.phase
        detail = f"not running now ({state})" + (f": {reason}" if reason else "")
        return failed(name, detail, hint or f"see 'sshwrap logs {profile.name}'", segment)
    when = f" ({_stamp(record.failed_at)})" if record.failed_at is not None else ""
    detail = (f"not running: its last start{when} failed: {reason}" if reason
              else "not running: its client has ended")
    return failed(name, detail, hint or f"start it: sshwrap up {profile.name}", segment)


def _stamp(when: float) -> str:
    """A time as the log's start markers write it."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))


#: What keeps a client from starting; a refused channel or a closed session does not.
_START_FAILURES = frozenset({
    FailureKind.PORT_TAKEN, FailureKind.AUTH_FAILED, FailureKind.HOST_KEY_UNKNOWN,
    FailureKind.HOST_KEY_CHANGED, FailureKind.NAME_NOT_RESOLVED,
    FailureKind.CONNECTION_REFUSED, FailureKind.TIMED_OUT, FailureKind.UNREACHABLE,
    FailureKind.REMOTE_PORT_BUSY, FailureKind.REMOTE_FORWARD_FORBIDDEN,
    FailureKind.JUMP_CANNOT_REACH_NEXT_HOP})
#: How long a probe that was hung up on waits for ssh's "open failed" line to reach the log.
LOG_GRACE = 0.2
_RUN_MARKER = re.compile(r"^--- sshwrap: starting (?P<name>\S+) at (?P<stamp>.+) ---$", re.M)


def _never_started(profile: Profile, paths: StatePaths) -> CheckStep:
    """No record: a start that failed leaves none, but its client's log tells why."""
    name, hint = "tunnel running", f"start it: sshwrap up {profile.name}"
    text = _read_log(paths.log(profile.name), 0)
    runs = list(_RUN_MARKER.finditer(text))
    if not runs:
        return failed(name, "not running", hint)
    diagnosis = diagnose_log(text[runs[-1].end():], profile)
    if diagnosis is None or diagnosis.kind not in _START_FAILURES:
        return failed(name, "not running", hint)
    return failed(name, f"not running: its last start ({runs[-1]['stamp']}) failed: "
                        f"{diagnosis.message}", diagnosis.hint,
                  diagnosis_segment(diagnosis, profile))


# -- far ends: probed through the tunnel, judged by this probe's own log lines -------------


@dataclass(frozen=True)
class _Plan:
    probe: Probe
    endpoint: tuple[str, int] | str
    socks_target: tuple[str, int] | None = None
    proxy_target: tuple[str, int] | None = None
    target_note: str = ""
    #: The host and port the forward leads to: what a quiet service is asked, and its name.
    service: tuple[str, int] | None = None


def _service(forward: Forward) -> tuple[str, int] | None:
    to = forward.to
    if not isinstance(to, TcpAddress):
        return None
    return to.host or "localhost", to.port


def _plan(profile: Profile, forward: Forward, reached: tuple[str, int] | None) -> _Plan | None:
    if forward.type is ForwardType.REMOTE:
        # The far end of a remote forward is on this side: what the tunnel host connects to.
        if forward.to is None:
            return None
        return _Plan(forward.probe or Probe.TCP, _probe_endpoint(forward.to),
                     service=_service(forward))
    endpoint = _probe_endpoint(forward.listen)
    target = forward.probe_target
    pinned = (target.host or "localhost", target.port) if target is not None else None
    if forward.type is ForwardType.DYNAMIC:
        probe = forward.probe or Probe.SOCKS
        if probe is not Probe.SOCKS:
            return _Plan(probe, endpoint)
        # By default the tunnel host is asked for itself, where the client reached it: that
        # works wherever the tunnel works (a router's sshd may listen on its LAN address only).
        if pinned is not None:
            socks, note = pinned, "probe_target"
        elif reached is not None:
            socks, note = reached, "the address ssh reached the tunnel host at"
        else:
            socks, note = (profile.host, profile.port or 22), "the tunnel host's own name"
        return _Plan(probe, endpoint, socks_target=socks, target_note=note)
    probe = forward.probe or Probe.TCP
    return _Plan(probe, endpoint, proxy_target=pinned if probe is Probe.HTTP else None,
                 service=_service(forward))


def _own(failures: list[ChannelFailure], forward: Forward) -> list[ChannelFailure]:
    """The failures of this forward's probe: plink does not say the port, ssh does."""
    port = forward.listen.port if isinstance(forward.listen, TcpAddress) else None
    return [f for f in failures if f.listen_port is None or f.listen_port == port]


def _far_end(profile: Profile, forward: Forward, log: Path, reached: tuple[str, int] | None,
             ) -> tuple[CheckStep | None, list[ChannelFailure]]:
    """One forward's probe, its verdict, and the log failures it did not cause."""
    from sshwrap.runtime.observe.probes import run_probe

    plan = _plan(profile, forward, reached)
    if plan is None:
        return None, []
    name = f"far end of {forward.describe()} ({plan.probe.value})"
    before = _log_size(log)
    result = run_probe(plan.probe, plan.endpoint, socks_target=plan.socks_target,
                       proxy_target=plan.proxy_target, service=plan.service)
    through = forward.type is not ForwardType.REMOTE
    window = channel_failures(log_lines(_read_log(log, before)))
    if through and result.silent and not result.ok and not _own(window, forward):
        # Hung up on: ssh writes "open failed" before it closes; a moment more for plink.
        time.sleep(LOG_GRACE)
        window = channel_failures(log_lines(_read_log(log, before)))
    own = _own(window, forward) if through else []
    others = [f for f in window if f not in own]
    note = f" (target: {plan.target_note})" if plan.target_note else ""
    # Unreachable only on evidence: ssh's own refusal of this probe's channel. A probe that
    # heard the far end speak was let through, whatever the log says of other connections.
    if own and (result.silent or not result.ok):
        diagnosis = channel_diagnosis(profile, path_hops(profile)[-1].label, own[-1])
        return failed(name, f"{diagnosis.message} [this check's probe: {result.detail}]",
                      diagnosis.hint, diagnosis_segment(diagnosis, profile)), others
    if result.ok:
        return passed(name, result.detail + note, SERVER_SIDE), others
    return failed(name, result.detail + note, _far_hint(profile, forward, plan, result),
                  SERVER_SIDE), others


def _far_hint(profile: Profile, forward: Forward, plan: _Plan, result: ProbeResult) -> str:
    if forward.type is ForwardType.REMOTE:
        return (f"the service on this side that {forward.describe()} points to does not "
                "answer: start it or fix the forward's 'to'")
    if plan.socks_target is not None and forward.probe_target is None:
        return ("the SOCKS proxy works only if the tunnel host reaches the probe's target; "
                "name one it reaches with probe_target = \"host:port\" on this forward")
    if result.silent:
        return (f"ssh opened the channel (its log has no 'open failed' for it), so the tunnel "
                f"reaches the service, which hung up without a word: it may refuse clients "
                f"from {profile.host} (an allow-list, tcp wrappers), or not be the service "
                f"the probe expects")
    return (f"the tunnel is up but the far end does not answer through it: check "
            f"{forward.describe()} as seen from {profile.host}")


def _log_steps(profile: Profile, earlier: list[ChannelFailure],
               during: list[ChannelFailure]) -> CheckStep:
    name = "log since this check began"
    history = ""
    if earlier:
        last = describe_channel(profile, earlier[-1])
        history = (f"; history: {len(earlier)} channel(s) failed before this check (last: "
                   f"{last}: {earlier[-1].reason}), not part of today's verdict")
    if not during:
        return passed(name, "no channel failed to open" + history, SERVER_SIDE)
    diagnosis = channel_diagnosis(profile, path_hops(profile)[-1].label, during[-1])
    return failed(name, f"{len(during)} connection(s) not made by this check failed: "
                        f"{diagnosis.message}{history}", diagnosis.hint,
                  diagnosis_segment(diagnosis, profile))


def _far_side_step(profile: Profile, record: TunnelRecord, forward: ExpectedForward,
                   paths: StatePaths) -> CheckStep:
    """A remote forward proven now from the tunnel host: every address it may be bound on
    reaches this tunnel (runtime/supervise/farside.py)."""
    from sshwrap.core.diagnose.farside import Outcome
    from sshwrap.runtime.supervise.farside import PLINK_NOT_PROVEN, check_forward, control_of

    name = f"remote {forward.listen} reached from the tunnel host (far side)"
    if record.client == "plink":
        return skipped(name, PLINK_NOT_PROVEN)
    log = Path(record.log_path)
    if record.shared is not None:
        from sshwrap.runtime.supervise.shared import master_name, master_paths

        log = master_paths(paths).log(master_name(record.shared))
    proofs, bad, detail = check_forward(profile, forward, control_of(record.argv), log)
    if bad:
        return failed(name, detail, f"stop the program that holds port {forward.port} on "
                      f"{profile.host} (see 'ss -ltnp' there), then: sshwrap restart "
                      f"{profile.name}", GATEWAY)
    outcomes = {p.outcome for p in proofs}
    if Outcome.PROVEN in outcomes:
        return passed(name, detail, GATEWAY)
    if Outcome.POLICY in outcomes:
        return skipped(name, detail, SERVER_POLICY)
    return skipped(name, detail or "far side not proven", GATEWAY)


def _listen_steps(profile: Profile, record: TunnelRecord, run_text: str,
                  paths: StatePaths) -> list[CheckStep]:
    from sshwrap.runtime.observe.verify import ListenerView

    steps = []
    for check in ListenerView().check(record.forwards, record.pid, run_text):
        if check.healthy and check.forward.type == "remote" and check.forward.port:
            steps += [passed(_listen_name(check), check.detail),
                      _far_side_step(profile, record, check.forward, paths)]
            continue
        name = _listen_name(check)
        if check.healthy:
            steps.append(passed(name, check.detail))
            continue
        detail = check.detail
        if check.holder is not None and check.holder.pid:
            detail += f": pid {check.holder.pid} ({check.holder.name or '?'})"
        steps.append(failed(name, detail, f"restart the tunnel: sshwrap restart {profile.name}"
                            if check.holder is None else "stop that process, then restart"))
    return steps


def _listen_name(check: ForwardCheck) -> str:
    where = "on the tunnel host" if check.forward.type == "remote" else "here"
    return f"{check.forward.type} {check.forward.listen} listens {where} (owned by the tunnel)"


def tunnel_steps(profile: Profile, paths: StatePaths) -> list[CheckStep]:
    from sshwrap.errors import StateConflict
    from sshwrap.runtime.system.state import live_process, read_record

    try:
        record = read_record(paths, profile.name)
    except StateConflict as exc:
        return [failed("tunnel running", exc.message, exc.hint)]
    if record is None:
        return [_never_started(profile, paths)]
    if live_process(record) is None:
        return [_not_running(profile, record),
                skipped("forwards and far ends", "checked once the tunnel runs", SERVER_SIDE)]
    restarts = f", restarted {record.restarts} time(s)" if record.restarts else ""
    steps = [passed("tunnel running", f"pid {record.pid}{restarts}")]
    log = Path(record.log_path)
    start = _log_size(log)
    run_text = _read_log(log, record.log_offset, start)
    steps += _listen_steps(profile, record, run_text, paths)
    reached = None if profile.jump else reached_address(log_lines(run_text))
    during: list[ChannelFailure] = []
    for forward in profile.forwards:
        step, others = _far_end(profile, forward, log, reached)
        if step is not None:
            steps.append(step)
        during += others
    earlier = channel_failures(log_lines(run_text))
    steps.append(_log_steps(profile, earlier, during))
    return steps
