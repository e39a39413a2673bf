"""A state dir made by someone else, files planted in it, profiles that are FIFOs: refused."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.errors import StateUnusable
from sshwrap.runtime.client import hostkeys
from sshwrap.runtime.engine import daemon
from sshwrap.runtime.system.paths import StatePaths
from sshwrap.sandbox import Sshd
from tests.helpers import as_user
from tests.runtime.tunnel_helpers import ProfileWriter

#: A command that hangs is a failure, not a stuck run.
TIMEOUT = 30
NAME = "alpha"


@pytest.fixture
def base() -> Iterator[Path]:
    """A short folder under /tmp that every user can pass through (pytest's own are 0700
    and too long for control sockets); every engine started in it is shut down."""
    path = Path(tempfile.mkdtemp(prefix="swsd-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for state in path.glob("*"):
        if state.is_dir() and state.stat().st_uid == os.geteuid():
            with contextlib.suppress(Exception):
                daemon.shutdown(StatePaths(state), timeout=10)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_user() -> Iterator[pwd.struct_passwd]:
    """A throwaway user without a home or a shell, removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    name = f"swsd{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def profiles(base: Path) -> Path:
    """A profile NAME whose server refuses at once (nothing listens on port 1): every
    refusal tested comes before ssh, and old code got as far as writing everything."""
    folder = base / "profiles"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / f"{NAME}.toml").write_text(
        'host = "127.0.0.1"\nport = 1\nuser = "nobody"\nrestart = "no"\n'
        '[[forward]]\ntype = "local"\nlisten = 18999\nto = "127.0.0.1:22"\n')
    (folder / f"{NAME}.toml").chmod(0o644)
    return folder


def sshwrap(args: list[str], state: Path, profiles: Path, *,
            user: pwd.struct_passwd | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "SSHWRAP_STATE_DIR": str(state), "SSHWRAP_PROFILES": str(profiles),
           "HOME": str(profiles.parent), "LANG": "C.UTF-8"}
    argv = [sys.executable, "-m", "sshwrap", *args]
    if user is not None:
        argv = as_user(user.pw_uid, user.pw_gid, argv)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False, cwd="/", stdin=subprocess.DEVNULL)


def tree(path: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under ``path``: owner, mode, and content (or a symlink's target)."""
    seen: dict[str, tuple[int, int, bytes | str]] = {}
    for entry in sorted(path.rglob("*")):
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode):
            what: bytes | str = os.readlink(entry)
        elif stat.S_ISREG(info.st_mode):
            what = entry.read_bytes()
        else:
            what = ""
        seen[str(entry.relative_to(path))] = (info.st_uid, info.st_mode, what)
    return seen


# -- a state dir of another user, with symlinks planted ---------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o755])
def test_root_refuses_a_state_dir_of_another_user(base: Path, profiles: Path,
                                                  other_user: pwd.struct_passwd,
                                                  mode: int) -> None:
    state = base / "x"
    victims = base / "victims"
    victims.mkdir()
    for folder in ("", "client", "logs", "tunnels", "locks"):
        (state / folder).mkdir(exist_ok=True)
    planted = {"client/alpha.conf": "conf", "logs/alpha.log": "log",
               "tunnels/alpha.json": "record"}
    for where, victim in planted.items():
        (victims / victim).write_text(f"root's {victim}\n")
        (state / where).symlink_to(victims / victim)
    for entry in [state, *state.rglob("*")]:
        os.lchown(entry, other_user.pw_uid, other_user.pw_gid)
    state.chmod(mode)
    before_victims, before_state = tree(victims), tree(state)

    done = sshwrap(["up", NAME], state, profiles)

    assert done.returncode == 9, done.stderr
    assert f"{state}: belongs to another user" in done.stderr
    assert f"owner {other_user.pw_name}" in done.stderr
    assert tree(victims) == before_victims  # nothing written through a planted link
    assert tree(state) == before_state  # nor anything made in the folder, nor chmodded
    assert stat.S_IMODE(state.stat().st_mode) == mode


@pytest.mark.parametrize("command", [["up", NAME], ["status"], ["down", NAME]])
def test_nothing_is_sent_to_a_socket_in_a_state_dir_of_another_user(
        base: Path, profiles: Path, other_user: pwd.struct_passwd, command: list[str]) -> None:
    """A listener another user put where the engine's socket goes is never told anything
    (the request carries the environment)."""
    import socket

    state = base / "x"
    (state / "ctl").mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(state / "ctl" / "supervisor"))
        listener.listen(4)
        listener.setblocking(False)
        for entry in [state, *state.rglob("*")]:
            os.lchown(entry, other_user.pw_uid, other_user.pw_gid)
        (state / "supervisor.lock").touch()

        done = sshwrap(command, state, profiles)

        with pytest.raises(BlockingIOError):
            listener.accept()
    assert done.returncode == 9, (done.stdout, done.stderr)
    assert "belongs to another user" in done.stderr


def test_a_folder_others_can_write_is_refused_even_when_it_is_ours(
        base: Path, profiles: Path) -> None:
    state = base / "x"
    state.mkdir()
    state.chmod(0o777)

    done = sshwrap(["up", NAME], state, profiles)

    assert done.returncode == 9, done.stderr
    assert f"{state}: can be written by other users" in done.stderr
    assert os.listdir(state) == []


#: Every kind of file or folder sshwrap keeps in the state dir that ``up`` reaches, as a
#: planted symlink (to a file, or a folder, of root's).
PLANTED = ["tunnels/alpha.json", "logs/alpha.log", "client/alpha.conf", "locks/alpha.lock",
           "supervisor.log", "supervisor.lock", "ctl/", "client/", "logs/", "tunnels/",
           "locks/"]


@pytest.mark.parametrize("where", PLANTED)
def test_up_refuses_a_symlink_planted_in_its_state_dir(base: Path, profiles: Path,
                                                       where: str) -> None:
    state = base / "x"
    state.mkdir(mode=0o700)
    victim = base / "victim"
    if where.endswith("/"):
        victim.mkdir(mode=0o700)
    else:
        victim.write_text("root's file\n")
    link = state / where.rstrip("/")
    link.parent.mkdir(mode=0o700, exist_ok=True)
    link.symlink_to(victim)
    before = tree(base / "victim") if victim.is_dir() else victim.read_bytes()

    done = sshwrap(["up", NAME], state, profiles)

    assert done.returncode == 9, done.stderr
    assert f"{link}: is a symlink" in done.stderr
    assert (tree(victim) if victim.is_dir() else victim.read_bytes()) == before


@pytest.mark.parametrize("folder", ["putty", "askpass", "known_hosts", "shared"])
def test_the_other_folders_refuse_a_planted_symlink(base: Path, folder: str) -> None:
    """plink's PUTTYDIR, the askpass sockets, the pinned host keys and the masters' state."""
    state = base / "x"
    state.mkdir(mode=0o700)
    (base / "victim").mkdir(mode=0o700)
    (state / folder).symlink_to(base / "victim")
    paths = StatePaths(state)

    with pytest.raises(StateUnusable, match="is a symlink"):
        if folder == "putty":
            hostkeys.putty_dir(state)
        elif folder == "known_hosts":
            paths.write(hostkeys.pinned_known_hosts(state, NAME), b"key\n")
        elif folder == "shared":
            from sshwrap.runtime.supervise import shared

            shared.master_paths(paths).ensure()
        else:
            paths.folder(state / folder)
    assert os.listdir(base / "victim") == []


def test_a_record_of_another_owner_is_not_read(
        base: Path, other_user: pwd.struct_passwd) -> None:
    state = base / "x"
    paths = StatePaths(state).ensure()
    paths.record(NAME).write_text("{}")
    os.chown(paths.record(NAME), other_user.pw_uid, other_user.pw_gid)

    from sshwrap.runtime.system import state as records

    with pytest.raises(StateUnusable, match="belongs to another user"):
        records.read_record(paths, NAME)


# -- another user pointed at root's state dir -------------------------------------------


@pytest.mark.parametrize("mode", [0o700, 0o755])
@pytest.mark.parametrize("command", [["status"], ["down", "--all"], ["reload"],
                                     ["logs", NAME], ["up", NAME], ["list"]])
def test_another_user_on_a_state_dir_of_root(base: Path, profiles: Path,
                                             other_user: pwd.struct_passwd,
                                             command: list[str], mode: int) -> None:
    state = base / "x"
    paths = StatePaths(state).ensure()
    (paths.logs / f"{NAME}.log").write_text("root's log\n")
    state.chmod(mode)
    before = tree(state)

    done = sshwrap(command, state, profiles, user=other_user)

    if command == ["list"]:  # reads profiles only
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 9, (done.stdout, done.stderr)
        assert f"{state}: belongs to another user" in done.stderr
        assert "owner root" in done.stderr
        assert "no profiles" not in done.stdout
        assert "internal error" not in done.stderr
    assert tree(state) == before


def test_read_only_commands_create_nothing(base: Path, profiles: Path) -> None:
    state = base / "x"
    state.mkdir(mode=0o700)
    for command in (["down", "--all"], ["status"], ["reload"], ["logs", NAME]):
        done = sshwrap(command, state, profiles)
        assert done.returncode == (2 if command[0] == "logs" else 0), (command, done.stderr)
        assert os.listdir(state) == [], command
    absent = base / "absent"
    for command in (["down", "--all"], ["status"], ["reload"]):
        done = sshwrap(command, absent, profiles)
        assert done.returncode == 0, (command, done.stderr)
        assert not absent.exists(), command


# -- profiles that are not regular files -------------------------------------------------


@pytest.mark.parametrize("command", [["list"], ["validate"], ["status"], ["check", "bad"],
                                     ["up", "bad"], ["validate", "BADPATH"]])
def test_a_fifo_profile_is_an_error_for_that_file_alone(base: Path, profiles: Path,
                                                        command: list[str]) -> None:
    fifo = profiles / "bad.toml"
    os.mkfifo(fifo)
    command = [str(fifo) if arg == "BADPATH" else arg for arg in command]

    done = sshwrap(command, base / "x", profiles)  # a hang fails with TimeoutExpired

    if command[0] == "status":  # an invalid profile is listed as down, as before
        assert "\nbad " in done.stdout, done.stdout
    else:
        assert f"{fifo}: is a FIFO, not a regular file" in done.stdout + done.stderr
    if command[0] in ("list", "status"):
        assert NAME in done.stdout  # the other profiles are shown as usual


def test_a_socket_profile_is_an_error(base: Path, profiles: Path) -> None:
    import socket

    path = profiles / "sock.toml"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        done = sshwrap(["validate", str(path)], base / "x", profiles)
    assert done.returncode == 2, done.stderr
    assert f"{path}: is a socket, not a regular file" in done.stdout + done.stderr


def test_reload_with_a_fifo_profile_reloads_the_others(
        sshd: Sshd, write_profile: ProfileWriter, profiles_dir: Path, state_dir: Path) -> None:
    write_profile("one", [{"type": "local", "listen": 0, "to": "127.0.0.1:1"}])
    write_profile("two", [{"type": "local", "listen": 0, "to": "127.0.0.1:1"}])
    for name in ("one", "two"):
        done = sshwrap(["up", name], state_dir, profiles_dir)
        assert done.returncode == 0, done.stderr
    (profiles_dir / "one.toml").unlink()
    os.mkfifo(profiles_dir / "one.toml")
    write_profile("two", [{"type": "local", "listen": 0, "to": "127.0.0.1:1"}],
                  description="edited")

    done = sshwrap(["reload"], state_dir, profiles_dir)

    assert f"{profiles_dir / 'one.toml'}: is a FIFO, not a regular file" in done.stdout + \
        done.stderr, (done.stdout, done.stderr)
    assert "two" in done.stdout
    down = sshwrap(["down", "--all"], state_dir, profiles_dir)
    assert down.returncode == 0, down.stderr
