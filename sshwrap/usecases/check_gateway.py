"""``check``'s gateway steps: each hop resolves, answers as sshd, and lets us log in as ``up``."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from sshwrap.core.compile.spec import LaunchSpec
from sshwrap.core.diagnose import Diagnosis, Segment, diagnose_log, unknown_failure
from sshwrap.core.model import AuthMethod, Client, Profile
from sshwrap.errors import SshwrapError
from sshwrap.runtime.client.launch import check_profile_files
from sshwrap.runtime.client.questions import AskQuestion
from sshwrap.runtime.system.detach import client_environment
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.usecases.check_steps import (
    CLIENT,
    GATEWAY,
    SERVER_POLICY,
    SERVER_SIDE,
    CheckStep,
    failed,
    hop_segment,
    passed,
    skipped,
)

CONNECT_TIMEOUT = 5
AUTH_TIMEOUT = 30.0


def _effective_endpoint(profile: Profile, program: str, host: str, port: int | None,
                        ) -> tuple[str, int]:
    """Host name and port as ssh will use them (an ssh config alias resolved by ``ssh -G``)."""
    if profile.client is not Client.SSH:
        return host, port or 22
    check_profile_files(profile)
    argv = [program, "-G"]
    if profile.ssh_config_file:
        argv += ["-F", profile.ssh_config_file]
    if port is not None:
        argv += ["-p", str(port)]
    argv += ["--", host]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False,
                             stdin=subprocess.DEVNULL, env=client_environment()).stdout
    except (OSError, subprocess.TimeoutExpired):
        return host, port or 22
    settings = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    effective_port = settings.get("port", "")
    return settings.get("hostname", host), int(effective_port) if effective_port.isdigit() \
        else (port or 22)


def hop_steps(profile: Profile, program: str) -> tuple[list[CheckStep], bool]:
    """Resolve and connect to the first hop; later hops are only reachable through it."""
    if profile.jump:
        first = profile.jump[0]
        label, host, port = f"jump host 1 ({first.render()})", first.host, first.port
        segment = hop_segment(1)
    else:
        label, host, port = f"tunnel host ({profile.host})", profile.host, profile.port
        segment = GATEWAY
    real_host, real_port = _effective_endpoint(profile, program, host, port)
    shown = f"{real_host} port {real_port}"
    steps: list[CheckStep] = []
    try:
        addresses = socket.getaddrinfo(real_host, real_port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        steps.append(failed(f"resolve {label}", f"{real_host}: {exc.strerror}",
                            f"check the spelling of {real_host!r}, DNS, or your ssh config",
                            segment))
        return steps, False
    shown_addresses = ", ".join(dict.fromkeys(str(a[4][0]) for a in addresses))
    steps.append(passed(f"resolve {label}", f"{real_host} is {shown_addresses}", segment))
    try:
        with socket.create_connection((real_host, real_port), timeout=CONNECT_TIMEOUT) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            greeting = sock.recv(256).split(b"\n", 1)[0].strip().decode("ascii", "replace")
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        steps.append(failed(f"connect to {label}", f"{shown}: {reason}",
                            "check the port, that sshd runs there, and firewalls on the way",
                            segment))
        return steps, False
    if not greeting.startswith("SSH-"):
        shown_greeting = "".join(ch if ch.isprintable() else "." for ch in greeting)[:60]
        steps.append(failed(f"connect to {label}", f"{shown} answers, but not as an ssh "
                            f"server ({shown_greeting or 'no greeting'})",
                            "check the port: something other than sshd listens there", segment))
        return steps, False
    steps.append(passed(f"connect to {label}", f"{shown} answers: {greeting}", segment))
    later = [(f"jump host {i} ({h.render()})", hop_segment(i))
             for i, h in enumerate(profile.jump[1:], start=2)]
    if profile.jump:
        later.append((f"tunnel host ({profile.host})", GATEWAY))
    for hop, hop_seg in later:
        steps.append(skipped(f"connect to {hop}", "reachable only through the previous hop: "
                             "checked by the authentication step", hop_seg))
    return steps, True


def login_launch(profile: Profile, log_path: Path) -> tuple[Profile, LaunchSpec]:
    """The tunnel's own client command without forwards: a login that runs ``true``, with a
    time limit per connection, compiled as ``up`` compiles it (prepared_launch)."""
    return replace(profile, forwards=()), LaunchSpec(
        log_path=str(log_path), connect_timeout=CONNECT_TIMEOUT, command=("true",))


def _authenticated(profile: Profile, log_text: str) -> bool:
    """Every hop logged in: OpenSSH says "Authenticated to", plink "Access granted"."""
    if profile.client is Client.PLINK:
        return "Access granted" in log_text
    return log_text.count("Authenticated to ") >= len(profile.jump) + 1


def _how(profile: Profile, secret: str | None, questions: int = 0) -> str:
    user = f" as {profile.user}" if profile.user else ""
    then = "" if not questions else ", then a one-time code" if questions == 1 \
        else f", then {questions} answers to the server's questions"
    if profile.auth is AuthMethod.PASSWORD:
        source = (f"${profile.password_env}" if profile.password_env
                  else "the keyring" if profile.password_keyring else "the terminal")
        return f"logged in{user} with the password (from {source}){then}, as 'up' does"
    if secret is not None:
        return f"logged in{user} with the key and its passphrase{then}, as 'up' does"
    if then:
        return f"logged in{user} with the key{then}, as 'up' does"
    return f"logged in{user} with the profile's key or agent, as 'up' does"


def diagnosis_segment(diagnosis: Diagnosis, profile: Profile) -> str:
    """The check segment of a log diagnosis: a jump host is its hop, the tunnel host the
    gateway."""
    if diagnosis.segment is Segment.CLIENT:
        return CLIENT
    if diagnosis.segment is Segment.SERVER:
        return SERVER_SIDE
    if diagnosis.segment is Segment.SERVER_POLICY:
        return SERVER_POLICY
    for index, hop in enumerate(profile.jump, start=1):
        if diagnosis.hop == f"jump host {index} ({hop.render()})":
            return hop_segment(index)
    return GATEWAY


def _run_login(profile: Profile, secret: str | None, paths: StatePaths, log: Path,
               ask: AskQuestion | None = None) -> tuple[bool, int]:
    """Run the login; False when it did not end within AUTH_TIMEOUT (it is stopped), not
    counting the time a person took to answer; and how many questions were answered."""
    import time

    from sshwrap.machine import host_facts
    from sshwrap.runtime.client.auth import prepared_launch
    from sshwrap.runtime.client.launch import stop_group

    quiet, spec = login_launch(profile, log)
    paths.ensure()
    # The same PUTTYDIR, pinned keys, client config and password channel as 'up'.
    with prepared_launch(quiet, host_facts(), secret, state_root=paths.root,
                         spec=spec, ask=ask) as prepared, log.open("ab") as handle:
        server = prepared.server
        proc = subprocess.Popen(prepared.argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=handle, env=prepared.env,
                                pass_fds=prepared.pass_fds, start_new_session=True)
        began = time.monotonic()
        while proc.poll() is None:
            asking = server.asking_time() if server is not None else 0.0
            if time.monotonic() - began - asking >= AUTH_TIMEOUT:
                stop_group(proc.pid, timeout=2.0)
                proc.wait()
                return False, 0
            try:
                proc.wait(0.2)
            except subprocess.TimeoutExpired:
                continue
        answered = len(server.questions_answered) if server is not None else 0
    return True, answered


def auth_step(profile: Profile, secret: str | None, paths: StatePaths,
              ask: AskQuestion | None = None) -> CheckStep:
    """Log in as ``up`` does; ``ask`` answers the server's questions (a one-time code)."""
    name = "authenticate" + (" through the jump hosts" if profile.jump else "")
    with tempfile.TemporaryDirectory(prefix="sshwrap-check-") as tmp:
        log = Path(tmp) / "auth.log"
        try:
            finished, questions = _run_login(profile, secret, paths, log, ask)
        except SshwrapError as exc:
            return failed(name, exc.message, exc.hint, GATEWAY)
        text = log.read_text(errors="replace") if log.exists() else ""
    if _authenticated(profile, text):
        return passed(name, _how(profile, secret, questions), GATEWAY)
    if not finished:
        return failed(name, f"no answer within {AUTH_TIMEOUT:g} s",
                      "a hop may be hanging; see 'sshwrap logs' after 'sshwrap up'", GATEWAY)
    diagnosis = diagnose_log(text, profile) or unknown_failure(text, profile)
    where = f" [{diagnosis.hop}]" if diagnosis.hop and diagnosis.hop not in diagnosis.message \
        else ""
    return failed(name, f"{diagnosis.message}{where}", diagnosis.hint,
                  diagnosis_segment(diagnosis, profile))
