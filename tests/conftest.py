"""Shared fixtures: a real OpenSSH sshd on loopback, its client identity, and a clean state dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from sshwrap.sandbox import BannerServer, ClientIdentity, Sshd

# In CI the property tests replay a fixed sequence of examples, so a run can be repeated
# exactly; on developers' machines every run explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="Rewrite tests/golden/* from the current compiler output instead of comparing.",
    )


def _require(binary: str, package: str) -> None:
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.skip(f"{binary} is not installed (apt-get install {package})")


@pytest.fixture(scope="session")
def client_identity(tmp_path_factory: pytest.TempPathFactory) -> ClientIdentity:
    _require("ssh", "openssh-client")
    return ClientIdentity(tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="session")
def sshd(
    tmp_path_factory: pytest.TempPathFactory, client_identity: ClientIdentity
) -> Iterator[Sshd]:
    """One real sshd on 127.0.0.1 for the whole session, checked with ``sshd -t`` first."""
    _require("sshd", "openssh-server")
    server = Sshd(tmp_path_factory.mktemp("sshd"), client_identity)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def banner_server() -> Iterator[BannerServer]:
    """A TCP service on loopback that greets and echoes: the far end of a forward."""
    with BannerServer() as server:
        yield server


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private sshwrap state directory for one test; its engine, if one was started, is
    gone at the end."""
    from sshwrap.runtime.engine import daemon
    from sshwrap.runtime.system.paths import StatePaths

    path = tmp_path / "state"
    monkeypatch.setenv("SSHWRAP_STATE_DIR", str(path))
    yield path
    daemon.shutdown(StatePaths(path))


@pytest.fixture
def profiles_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty profile directory, the only one searched."""
    path = tmp_path / "profiles"
    path.mkdir()
    monkeypatch.setenv("SSHWRAP_PROFILES", str(path))
    return path

