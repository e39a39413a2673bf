"""``check NAME``: walk a tunnel's path step by step, as a careful administrator would."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from sshwrap.core.model import Client, ForwardType, Probe, Profile, TcpAddress, UnixAddress
from sshwrap.errors import InvalidInput
from sshwrap.runtime.paths import StatePaths
from sshwrap.store import ProfileStore

CONNECT_TIMEOUT = 5
AUTH_TIMEOUT = 30.0


class StepStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a step status, not a secret
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckStep:
    name: str
    status: StepStatus
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class CheckReport:
    name: str
    steps: tuple[CheckStep, ...]

    @property
    def ok(self) -> bool:
        return all(step.status is not StepStatus.FAIL for step in self.steps)

    def to_json(self) -> object:
        from sshwrap.cli.render import to_jsonable

        return {"name": self.name, "ok": self.ok, "steps": to_jsonable(list(self.steps))}


@dataclass(frozen=True)
class _Endpoint:
    label: str
    host: str
    port: int


def _passed(name: str, detail: str) -> CheckStep:
    return CheckStep(name, StepStatus.PASS, detail)


def _failed(name: str, detail: str, hint: str) -> CheckStep:
    return CheckStep(name, StepStatus.FAIL, detail, hint)


def _skipped(name: str, detail: str) -> CheckStep:
    return CheckStep(name, StepStatus.SKIP, detail)


# --- the path before the tunnel: binary, profile, hops, authentication ----------------------


def _effective_endpoint(profile: Profile, program: str, host: str, port: int | None,
                        ) -> tuple[str, int]:
    """Host name and port as ssh will use them (an ssh config alias resolved by ``ssh -G``)."""
    if profile.client is not Client.SSH:
        return host, port or 22
    argv = [program, "-G"]
    if profile.ssh_config_file:
        argv += ["-F", profile.ssh_config_file]
    if port is not None:
        argv += ["-p", str(port)]
    argv += ["--", host]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return host, port or 22
    settings = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    effective_port = settings.get("port", "")
    return settings.get("hostname", host), int(effective_port) if effective_port.isdigit() \
        else (port or 22)


def _hop_steps(profile: Profile, program: str) -> tuple[list[CheckStep], bool]:
    """Resolve and connect to the first hop; later hops are only reachable through it."""
    if profile.jump:
        first = profile.jump[0]
        label, host, port = f"jump host 1 ({first.render()})", first.host, first.port
    else:
        label, host, port = f"tunnel host ({profile.host})", profile.host, profile.port
    real_host, real_port = _effective_endpoint(profile, program, host, port)
    shown = f"{real_host} port {real_port}"
    steps: list[CheckStep] = []
    try:
        addresses = socket.getaddrinfo(real_host, real_port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        steps.append(_failed(f"resolve {label}", f"{real_host}: {exc.strerror}",
                             f"check the spelling of {real_host!r}, DNS, or your ssh config"))
        return steps, False
    shown_addresses = ", ".join(dict.fromkeys(str(a[4][0]) for a in addresses))
    steps.append(_passed(f"resolve {label}", f"{real_host} is {shown_addresses}"))
    try:
        with socket.create_connection((real_host, real_port), timeout=CONNECT_TIMEOUT) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            greeting = sock.recv(256).split(b"\n", 1)[0].strip().decode("ascii", "replace")
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        steps.append(_failed(f"connect to {label}", f"{shown}: {reason}",
                             "check the port, that sshd runs there, and firewalls on the way"))
        return steps, False
    if not greeting.startswith("SSH-"):
        steps.append(_failed(f"connect to {label}", f"{shown} answers, but not as an ssh "
                             f"server ({greeting or 'no greeting'})",
                             "check the port: something other than sshd listens there"))
        return steps, False
    steps.append(_passed(f"connect to {label}", f"{shown} answers: {greeting}"))
    later = [f"jump host {i} ({h.render()})" for i, h in enumerate(profile.jump[1:], start=2)]
    if profile.jump:
        later.append(f"tunnel host ({profile.host})")
    for hop in later:
        steps.append(_skipped(f"connect to {hop}",
                              "reachable only through the previous hop: checked by the "
                              "authentication step"))
    return steps, True


def auth_argv(profile: Profile, program: str, log_path: Path) -> list[str]:
    """A one-shot login with the profile's own options, no forwards, and no prompts."""
    quiet = replace(profile, forwards=())
    if profile.client is Client.PLINK:
        from sshwrap.core.compile.plink import compile_plink

        argv = compile_plink(quiet, program=program, extra_args=["-v"])
        argv.remove("-N")
        return [*argv, "true"]
    from sshwrap.core.compile.ssh import compile_ssh

    argv = compile_ssh(quiet, program=program, extra_args=[
        "-v", "-E", str(log_path), "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"])
    argv.remove("-N")
    return [*argv, "true"]


def _authenticated(profile: Profile, log_text: str) -> bool:
    """Every hop logged in: OpenSSH says "Authenticated to", plink "Access granted"."""
    hops = len(profile.jump) + 1
    if profile.client is Client.PLINK:
        return log_text.count("Access granted") >= 1
    return log_text.count("Authenticated to ") >= hops


def _auth_step(profile: Profile, program: str) -> CheckStep:
    from sshwrap.core.diagnose import diagnose_log, unknown_failure

    name = "authenticate" + (" through the jump hosts" if profile.jump else "")
    with tempfile.TemporaryDirectory(prefix="sshwrap-check-") as tmp:
        log = Path(tmp) / "auth.log"
        argv = auth_argv(profile, program, log)
        with log.open("ab") as handle:
            try:
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=handle, timeout=AUTH_TIMEOUT, check=False,
                               start_new_session=True)
            except subprocess.TimeoutExpired:
                return _failed(name, f"no answer within {AUTH_TIMEOUT:g} s",
                               "a hop may be hanging; see 'sshwrap logs' after 'sshwrap up'")
        text = log.read_text(errors="replace")
    if _authenticated(profile, text):
        return _passed(name, "logged in with the profile's options (batch mode)")
    diagnosis = diagnose_log(text, profile) or unknown_failure(text, profile)
    where = f" [{diagnosis.hop}]" if diagnosis.hop else ""
    return _failed(name, f"{diagnosis.message}{where}", diagnosis.hint)


# --- the running tunnel: forwards, far ends, log --------------------------------------------


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


def _far_end_steps(profile: Profile) -> list[CheckStep]:
    from sshwrap.runtime.probes import run_probe

    steps = []
    for forward in profile.forwards:
        probe = forward.probe or Probe.TCP
        step_name = f"far end of {forward.describe()} ({probe.value})"
        if forward.type is ForwardType.REMOTE:
            # The far end of a remote forward is on this side: what the server connects to.
            if forward.to is None:
                continue
            endpoint = _probe_endpoint(forward.to)
            hint = "the service on this side that the remote forward points to is not answering"
        else:
            endpoint = _probe_endpoint(forward.listen)
            hint = ("the tunnel is up but the far end does not answer through it: check the "
                    "target as seen from the tunnel host")
        socks_target = (("127.0.0.1", profile.port or 22)
                        if forward.type is ForwardType.DYNAMIC else None)
        result = run_probe(probe, endpoint, socks_target=socks_target)
        steps.append(_passed(step_name, result.detail) if result.ok else
                     _failed(step_name, result.detail, hint))
    return steps


def _running_steps(profile: Profile, paths: StatePaths) -> list[CheckStep]:
    from sshwrap.core.diagnose import open_failures
    from sshwrap.errors import StateConflict
    from sshwrap.runtime.state import live_process, read_record

    try:
        record = read_record(paths, profile.name)
    except StateConflict as exc:
        return [_failed("tunnel running", exc.message, exc.hint)]
    if record is None or live_process(record) is None:
        return [_skipped("tunnel running", f"not running: 'sshwrap up {profile.name}' starts "
                                           "it; forwards and far ends are checked once it runs")]
    steps = [_passed("tunnel running", f"pid {record.pid}")]
    from sshwrap.runtime.verify import ListenerView

    for check in ListenerView().check(record.forwards, record.pid):
        name = f"{check.forward.type} {check.forward.listen} listens (owned by the tunnel)"
        if check.healthy:
            steps.append(_passed(name, check.detail))
            continue
        detail = check.detail
        if check.holder is not None and check.holder.pid:
            detail += f": pid {check.holder.pid} ({check.holder.name or '?'})"
        steps.append(_failed(name, detail, f"restart the tunnel: sshwrap restart {profile.name}"
                             if check.holder is None else "stop that process, then restart"))
    steps.extend(_far_end_steps(profile))
    try:
        with Path(record.log_path).open("rb") as handle:
            handle.seek(record.log_offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        steps.append(_skipped("log has no 'open failed'", f"no log at {record.log_path}"))
        return steps
    failures = open_failures(text)
    if failures:
        steps.append(_failed("log has no 'open failed'",
                             f"{len(failures)} failed: " + " | ".join(failures[-3:]),
                             "the tunnel host could not reach a forward's target (the server "
                             "side): check the 'to' address as seen from the tunnel host"))
    else:
        steps.append(_passed("log has no 'open failed'", "no channel failed to open"))
    return steps


def run_check(store: ProfileStore, name: str, paths: StatePaths | None = None,
              on_step: Callable[[CheckStep], None] | None = None) -> CheckReport:
    """Every step, in path order; a failing step makes the steps that need it skip."""
    paths = paths or StatePaths.from_env()
    steps: list[CheckStep] = []

    def add(*new: CheckStep) -> None:
        for step in new:
            steps.append(step)
            if on_step is not None:
                on_step(step)

    try:
        profile = store.load(name)
    except InvalidInput as exc:
        add(_failed("profile valid", "; ".join(exc.lines()), exc.hint or
                    "fix the profile; 'sshwrap validate' lists every problem"))
        return CheckReport(name, tuple(steps))
    program = shutil.which(profile.client.value)
    if program is None:
        add(_failed(f"{profile.client.value} installed", "not found on PATH",
                    "apt-get install " + ("putty-tools" if profile.client is Client.PLINK
                                          else "openssh-client")))
    else:
        add(_passed(f"{profile.client.value} installed", program))
    from sshwrap.usecases.profiles import compile_problems

    problems = compile_problems(profile)
    if problems:
        add(_failed("profile valid", "; ".join(problems), "sshwrap validate " + name))
    else:
        add(_passed("profile valid", profile.source or name))
    if program is None or problems:
        add(_skipped("connect and authenticate", "needs the client and a valid profile"))
        return CheckReport(profile.name, tuple(steps))
    hop_steps, reachable = _hop_steps(profile, program)
    add(*hop_steps)
    if reachable:
        add(_auth_step(profile, program))
    else:
        add(_skipped("authenticate", "the first hop is not reachable"))
    add(*_running_steps(profile, paths))
    return CheckReport(profile.name, tuple(steps))
