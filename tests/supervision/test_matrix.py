"""Every failure kind, whichever way the tunnel runs, gives the same exit code and words, and
``status`` keeps the reason until ``up`` or ``down``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sshwrap.errors import ExitCode
from sshwrap.runtime.supervise.restart import is_fatal
from sshwrap.runtime.system import state
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.runtime.system.wire import KIND_OF_CODE
from sshwrap.sandbox import ClientIdentity, Sshd, free_port
from tests.runtime.tunnel_helpers import eventually

pytestmark = pytest.mark.sshd

NAME = "matrix"
MODES = ("engine", "run once", "shared", "foreground")


@dataclass
class Kind:
    """One way a tunnel fails: the profile that fails so, and what every mode must report."""

    code: ExitCode
    words: str  # in the message, whichever way it runs
    keys: dict[str, Any] = field(default_factory=dict)
    hold: Callable[[dict[str, Any]], contextlib.AbstractContextManager[object]] | None = None
    wait: str = "15"


@contextlib.contextmanager
def _held(host: str, port: int) -> Iterator[object]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((host, port))
        holder.listen()
        yield holder


def _config(root: Path, key: Path, known: str) -> Path:
    """An ssh config with ``key`` as identity and ``known`` as its known_hosts content."""
    root.mkdir(parents=True, exist_ok=True)
    known_hosts = root / "known_hosts"
    known_hosts.write_text(known)
    config = root / "ssh_config"
    config.write_text(f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n"
                      f"    UserKnownHostsFile {known_hosts}\n    GlobalKnownHostsFile /dev/null\n"
                      "    UpdateHostKeys no\n    PasswordAuthentication no\n"
                      "    KbdInteractiveAuthentication no\n")
    return config


@pytest.fixture(scope="module")
def kinds(sshd: Sshd, client_identity: ClientIdentity,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Kind]:
    root = tmp_path_factory.mktemp("matrix")
    other = root / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    server_known = f"[127.0.0.1]:{sshd.port} {sshd.host_public_key.strip()}\n"
    stale_known = f"[127.0.0.1]:{sshd.port} {other.with_suffix('.pub').read_text().strip()}\n"
    remote_port = free_port()
    return {
        "auth": Kind(ExitCode.AUTH, "", {"ssh_config_file": str(
            _config(root / "auth", other, server_known))}),
        "unknown host key": Kind(ExitCode.AUTH, "not known yet", {"ssh_config_file": str(
            _config(root / "unknown", client_identity.key, ""))}),
        "changed host key": Kind(ExitCode.AUTH, "CHANGED", {"ssh_config_file": str(
            _config(root / "changed", client_identity.key, stale_known))}),
        "pinned key mismatch": Kind(ExitCode.AUTH, "SHA256:" + "A" * 43,
                                    {"host_key": "SHA256:" + "A" * 43}),
        "port taken": Kind(ExitCode.FORWARDING, f"pid {os.getpid()}",
                           hold=lambda p: _held("127.0.0.1", p["forward"][0]["listen"])),
        "connection refused": Kind(ExitCode.CONNECTION, "", {"port": free_port()}),
        "name does not resolve": Kind(ExitCode.CONNECTION, "no-such-host.invalid",
                                      {"host": "no-such-host.invalid"}),
        "remote forward refused": Kind(
            ExitCode.FORWARDING, str(remote_port),
            {"forward": [{"type": "remote", "listen": f"127.0.0.1:{remote_port}",
                          "to": "127.0.0.1:9"}]},
            hold=lambda _p: _held("127.0.0.1", remote_port)),
        "not ready": Kind(ExitCode.NOT_READY, "", wait="0.001"),
    }


def _sshwrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _profile(sshd: Sshd, kind: Kind, mode: str, listen: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "ssh_config_file": str(sshd.client.ssh_config),
        "restart": "no" if mode == "run once" else "always",
        "forward": [{"type": "local", "listen": listen, "to": "127.0.0.1:9"}],
    }
    if mode == "shared":
        data["share_connection"] = True
    data.update(kind.keys)
    return data


def _message(stderr: str) -> str:
    """The error's message as ``up`` printed it (it may run over several lines)."""
    assert stderr.startswith("sshwrap: error: "), stderr
    return stderr.removeprefix("sshwrap: error: ").split("\nhint: ")[0].rstrip("\n")


def _foreground(paths: StatePaths, kind: Kind) -> tuple[int, str]:
    """Run the tunnel as a systemd unit does (the engine in the foreground); the code and
    words of its failure: its exit status when it is fatal, else what it records while it
    keeps retrying. ``status`` shows the same, from another process."""
    unit = subprocess.Popen(
        [sys.executable, "-m", "sshwrap", "--engine", "--foreground", "--up", NAME,
         "--wait", kind.wait],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if is_fatal(KIND_OF_CODE[int(kind.code)]("")):
            code = unit.wait(60)
            record = state.read_record(paths, NAME)
            assert record is not None
            _assert_status_keeps(code, record.last_failure or "", "failed")
            return code, record.last_failure or ""

        def failed_once() -> bool:
            found = state.read_record(paths, NAME)
            return found is not None and found.failure_code is not None

        eventually(failed_once, "the foreground engine recorded a failed attempt")
        record = state.read_record(paths, NAME)
        assert record is not None and record.failure_code is not None
        _assert_status_keeps(record.failure_code, record.last_failure or "", "reconnecting",
                             paths=paths)
        return record.failure_code, record.last_failure or ""
    finally:
        if unit.poll() is None:
            unit.send_signal(signal.SIGTERM)
            assert unit.wait(30) == 0


def _assert_status_keeps(code: int, words: str, shown_state: str,
                         paths: StatePaths | None = None) -> None:
    """``status`` shows the failure: kept ``failed`` with its code, or the reason of the
    retries of a tunnel that is still being reconnected (between two attempts or in one).

    A tunnel being retried (``paths`` given) may fail again while ``status`` runs, in other
    words (the client's last messages at the deadline differ): then ``status`` shows the
    reason recorded just before or just after it ran."""
    for _ in range(2):
        shown = _sshwrap("status", NAME, "--json")
        assert shown.returncode == ExitCode.UNHEALTHY, shown.stderr
        row = json.loads(shown.stdout)[0]
        allowed = {words}
        if paths is not None:
            after = state.read_record(paths, NAME)
            if after is not None and after.last_failure:
                words = after.last_failure
                allowed.add(words)
        assert row["last_failure"] in allowed, row
        assert row["state"] in ((shown_state, "starting") if shown_state == "reconnecting"
                                else (shown_state,)), row
        if shown_state == "failed":
            assert row["failure_code"] == code and row["failed_at"] is not None, row


@pytest.mark.parametrize("kind_name", [
    "auth", "unknown host key", "changed host key", "pinned key mismatch", "port taken",
    "connection refused", "name does not resolve", "remote forward refused", "not ready"])
def test_every_mode_reports_the_failure_alike_and_keeps_it(
    kind_name: str, kinds: dict[str, Kind], sshd: Sshd, runtime_paths: StatePaths,
    profiles_dir: Path,
) -> None:
    kind = kinds[kind_name]
    seen: dict[str, tuple[int, str]] = {}
    listen = free_port()  # the same in every mode: the words may name it
    for mode in MODES:
        profile = _profile(sshd, kind, mode, listen)
        (profiles_dir / f"{NAME}.toml").write_text(tomli_w.dumps(profile))
        with kind.hold(profile) if kind.hold else contextlib.nullcontext():
            if mode == "foreground":
                seen[mode] = _foreground(runtime_paths, kind)
            else:
                done = _sshwrap("up", NAME, "--wait", kind.wait)
                seen[mode] = done.returncode, _message(done.stderr)
                # A failure is state: status shows it, and again, until up or down.
                for _ in range(2):
                    shown = _sshwrap("status", NAME, "--json")
                    assert shown.returncode == ExitCode.UNHEALTHY, shown.stderr
                    row = json.loads(shown.stdout)[0]
                    assert (row["state"], row["failure_code"], row["last_failure"]) == \
                        ("failed", int(kind.code), seen[mode][1]), (mode, row)
                    assert row["failed_at"] is not None
        assert _sshwrap("down", NAME).returncode == 0
        assert state.recorded_names(runtime_paths) == []

    codes = {mode: code for mode, (code, _words) in seen.items()}
    assert set(codes.values()) == {int(kind.code)}, seen
    # The client's last log lines that a not-ready error ends with are evidence, not words:
    # how far ssh got by the deadline differs from run to run.
    words = {mode: text.replace(f"{NAME}: ", "", 1).split("; last messages:")[0]
             for mode, (_code, text) in seen.items()}
    assert len(set(words.values())) == 1, seen
    assert kind.words in words["engine"], seen
