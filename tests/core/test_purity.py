"""The functional core imports no process, network or terminal machinery."""

from __future__ import annotations

import subprocess
import sys

IMPURE = ("subprocess", "psutil", "pexpect", "socket")

PROGRAM = f"""
import importlib, pkgutil, sys
import sshwrap.core
names = [m.name for m in pkgutil.walk_packages(sshwrap.core.__path__, "sshwrap.core.")]
for name in names:
    importlib.import_module(name)
print(len(names))
print(",".join(m for m in {IMPURE!r} if m in sys.modules))
"""


def test_core_loads_no_impure_module() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          check=True)
    count, loaded = done.stdout.splitlines()
    assert int(count) >= 8  # model, syntax, parse, binds, sshcmd and the compilers
    assert loaded == ""


def test_the_check_would_notice() -> None:
    program = PROGRAM.replace("print(len(names))", "import socket\nprint(len(names))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=True)
    assert "socket" in done.stdout.splitlines()[1]
