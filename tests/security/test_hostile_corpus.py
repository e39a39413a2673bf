"""The hostile corpus through the command line: exit 2, one line naming the key, nothing done."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from sshwrap.textsafe import shown_key
from tests.security.corpus import CASES, Case

REPO = Path(__file__).resolve().parents[2]
USER_CONFIG = b"Host other\n    HostName other.example.invalid\n"

#: Each case runs one of these (in turn), so that every output target sees the corpus.
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("compile", "{name}", "--to", "ssh"),
    ("compile", "{name}", "--to", "plink"),
    ("compile", "{name}", "--to", "config"),
    ("compile", "{name}", "--to", "systemd"),
    ("up", "{name}"),
    ("config", "sync"),
    ("validate", "{name}"),
)


@dataclass(frozen=True)
class Sandbox:
    root: Path
    profiles: Path
    state: Path
    home: Path
    sentinel: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "SSHWRAP_PROFILES": str(self.profiles),
                "SSHWRAP_STATE_DIR": str(self.state), "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"), "NO_COLOR": "1"}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sshwrap", *args], capture_output=True,
                              text=True, errors="replace", env=self.env(), cwd=self.root,
                              check=False, timeout=120, stdin=subprocess.DEVNULL)

    def files(self) -> dict[str, bytes]:
        """Every file under HOME, the profiles and the state dir, with its content."""
        found: dict[str, bytes] = {}
        for top in (self.home, self.profiles, self.state):
            for path in sorted(top.rglob("*")) if top.exists() else ():
                found[str(path)] = path.read_bytes() if path.is_file() else b"<dir>"
        return found


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path, tmp_path / "profiles", tmp_path / "state", tmp_path / "home",
                  tmp_path / "sentinel")
    box.profiles.mkdir()
    (box.home / ".ssh").mkdir(parents=True, mode=0o700)
    (box.home / ".ssh" / "config").write_bytes(USER_CONFIG)
    yield box
    assert not _processes_of(box), "a process was left running"


def _processes_of(box: Sandbox) -> list[int]:
    """Processes started for this sandbox (they carry its state dir in their environment)."""
    pids = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SSHWRAP_STATE_DIR") == str(box.state):
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return pids


def _problem_lines(done: subprocess.CompletedProcess[str], validate: bool) -> list[str]:
    if validate:
        return [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    prefix = "sshwrap: error: "
    return [line[len(prefix):] for line in done.stderr.splitlines() if line.startswith(prefix)]


def _expect_refused(case: Case, done: subprocess.CompletedProcess[str], file: Path,
                    validate: bool) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = _problem_lines(done, validate)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"{file}: "), line
    if case.key is not None:
        assert f": {shown_key(case.key)}: " in line, line
    output = done.stdout + done.stderr
    assert not any(ch in output for ch in "\x1b\r\x00\u202e"), "a control character was echoed"
    assert len(line) < 600, "a value was echoed back whole"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_is_refused(case: Case, sandbox: Sandbox) -> None:
    name = "hostile"
    file = sandbox.profiles / f"{name}.toml"
    file.write_bytes(case.document(str(sandbox.sentinel)))
    before = sandbox.files()
    command = COMMANDS[CASES.index(case) % len(COMMANDS)]
    done = sandbox.run(*(part.format(name=name) for part in command))
    _expect_refused(case, done, file, validate=command[0] == "validate")
    assert sandbox.files() == before, "something was written"
    assert not sandbox.state.exists() or not any(sandbox.state.rglob("*"))
    assert not sandbox.sentinel.exists(), "a command from the profile ran"


def test_whole_corpus_at_once(sandbox: Sandbox) -> None:
    """validate and list over every case together: each file its one line, list stays clean,
    and one bad profile does not keep a good one from loading."""
    files = [(case, sandbox.profiles / f"c{i:03d}.toml") for i, case in enumerate(CASES)]
    for case, file in files:
        file.write_bytes(case.document(str(sandbox.sentinel)))
    (sandbox.profiles / "good.toml").write_text(
        'host = "gw.example.invalid"\n[[forward]]\ntype = "local"\nlisten = 3307\n'
        'to = "db:3306"\n')
    validated = sandbox.run("validate")
    assert validated.returncode == 2
    problems = _problem_lines(validated, validate=True)
    assert len(problems) == len(CASES)
    for case, file in files:
        mine = [p for p in problems if p.startswith(f"{file}: ")]
        assert len(mine) == 1, (case.id, mine)
        if case.key is not None:
            assert f": {shown_key(case.key)}: " in mine[0], mine
    assert f"ok       {sandbox.profiles / 'good.toml'}" in validated.stdout
    listed = sandbox.run("list")
    assert listed.returncode == 0, listed.stderr
    assert not any(ch in listed.stdout + listed.stderr for ch in "\x1b\r\x00\u202e")
    rows = [line for line in listed.stdout.splitlines() if " INVALID " in line]
    assert len(rows) == len(CASES)
    assert any(line.startswith("good ") and "local 3307 -> db:3306" in line
               for line in listed.stdout.splitlines())
    assert not sandbox.sentinel.exists()


def test_corpus_is_large_and_covers_every_key() -> None:
    assert len(CASES) >= 100
    keys = {c.key.split(".")[0].split("[")[0] for c in CASES if c.key}
    assert {"host", "user", "port", "jump", "identity_file", "ssh_config_file", "options",
            "forward", "description", "tags", "keepalive", "client", "host_key", "auth",
            "password_env"} <= keys


#: ``sshwrap add NAME -- ssh ...`` lines (and flags) with the key their one problem names.
ADD_CASES: list[tuple[list[str], str]] = [
    (["--", "ssh", "-o", "ProxyCommand=touch @S@", "-L", "1:a:1", "h"], "-o ProxyCommand="),
    (["--", "ssh", "-o", "proxycommand touch @S@", "-L", "1:a:1", "h"], "-o proxycommand"),
    (["--", "ssh", "-oNOHOSTAUTHENTICATIONFORLOCALHOST=yes", "-L", "1:a:1", "h"], "-o NOHOST"),
    (["--", "ssh", "-o", "NumberOfPasswordPrompts=5", "-L", "1:a:1", "h"], "-o Number"),
    (["--", "ssh", "-o", "UserKnownHostsFile=/dev/null", "-L", "1:a:1", "h"], "-o UserKnown"),
    (["--", "ssh", "-o", "StrictHostKeyChecking=no", "-L", "1:a:1", "h"], "-o StrictHost"),
    (["--", "ssh", "-o", "SendEnv=AWS_SECRET", "-L", "1:a:1", "h"], "-o SendEnv"),
    (["--", "ssh", "-o", "ConnectTimeout=\uff15", "-L", "1:a:1", "h"], "-o ConnectTimeout"),
    (["--", "ssh", "-L", "1:[::1%x'$(touch @S@)']:80", "h"], "forward[0].to"),
    (["--", "ssh", "-L", "127.lan.example:1:a:1", "h"], "forward[0].listen"),
    (["--", "ssh", "-J", "j;touch @S@", "-L", "1:a:1", "h"], "jump[0]"),
    (["--", "ssh", "-l", "$(touch @S@)", "-L", "1:a:1", "h"], "user"),
    (["--", "ssh", "-p", "\u00b2", "-L", "1:a:1", "h"], "-p"),
    (["--", "ssh", "-L", "1:a:1", "::1%h'$(touch @S@)'"], "host"),
    (["--host", "h\x1b[2J", "-L", "1:a:1"], "host"),
    (["--host", "h", "-L", "1:a:\uff18\uff10"], "forward[0].to"),
]


@pytest.mark.parametrize(("args", "key"), ADD_CASES, ids=[f"add-{i}" for i in range(16)])
def test_add_refuses_hostile_input(args: list[str], key: str, sandbox: Sandbox) -> None:
    before = sandbox.files()
    args = [a.replace("@S@", str(sandbox.sentinel)) for a in args]
    done = sandbox.run("add", "pasted", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = _problem_lines(done, validate=False)
    assert len(lines) == 1 and key in lines[0], lines
    assert not any(ch in done.stdout + done.stderr for ch in "\x1b\r\x00")
    assert sandbox.files() == before
    assert not sandbox.sentinel.exists()


def test_file_names_are_escaped_in_list_and_validate(sandbox: Sandbox) -> None:
    name = "evil\x1b[2J\u202e"
    (sandbox.profiles / f"{name}.toml").write_text('host = "h"\n')
    listed = sandbox.run("list")
    validated = sandbox.run("validate")
    assert (listed.returncode, validated.returncode) == (0, 2)
    for output in (listed.stdout + listed.stderr, validated.stdout + validated.stderr):
        assert "evil" in output
        assert not any(ch in output for ch in "\x1b\u202e"), output
