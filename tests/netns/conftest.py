"""The guides' network as namespaces (root only), and a way to run sshwrap on any of its hosts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sshwrap.netlab import NetLab
from tests.netns.lab_client import Client, lab_client, running_lab

__all__ = ["Client", "lab", "you"]

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    with running_lab(tmp_path_factory.mktemp("lab")) as network:
        yield network


@pytest.fixture
def you(lab: NetLab, tmp_path: Path) -> Iterator[Client]:
    with lab_client(lab, tmp_path) as client:
        yield client
