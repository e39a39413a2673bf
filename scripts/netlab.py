#!/usr/bin/env python3
"""Bring the guides' network up (as root) for trying sshwrap by hand; Ctrl-C tears it down."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from sshwrap.netlab import GUIDE_PROFILES, NetLab, can_run, remove_leftovers


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM tears down like Ctrl-C


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hold", type=float, default=0,
                        help="tear down after this many seconds (default: wait for Ctrl-C)")
    parser.add_argument("--clean", action="store_true",
                        help="remove namespaces left by a lab that crashed, then exit")
    args = parser.parse_args()
    reason = can_run()
    if reason:
        print(f"netlab: {reason}", file=sys.stderr)
        return 3
    if args.clean:
        for name in remove_leftovers():
            print(f"removed {name}")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="sshwrap-lab-") as tmp:
        root = Path(tmp)
        profiles = root / "profiles"
        profiles.mkdir()
        for name, text in GUIDE_PROFILES.items():
            (profiles / f"{name}.toml").write_text(text)
        with NetLab(root) as lab:
            you = lab.by_name["you"].netns
            shell = (f"ip netns exec {you} env SSHWRAP_PROFILES={profiles} "
                     f"SSHWRAP_STATE_DIR={root / 'state'} bash")
            print("The guides' network is up:")
            for host in lab.by_name.values():
                nets = ", ".join(f"{seg} {addr}" for seg, addr in host.addresses.items())
                role = "sshd" if host.spec.sshd else "services" if host.spec.services else ""
                print(f"  {host.name:<13} {role:<9} {nets}")
            print(f"\nOpen a shell on 'you':\n  {shell}")
            print("and try:\n  sshwrap list\n  sshwrap up git && sshwrap status\n"
                  "  python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', "
                  "7999)).recv(64))\"\n  sshwrap check git\n  sshwrap down --all")
            print(f"\nOr run one command there: ip netns exec {you} "
                  f"{shlex.join(['env', f'SSHWRAP_PROFILES={profiles}', 'sshwrap', 'list'])}")
            print("\nCtrl-C tears everything down.", flush=True)
            try:
                deadline = time.monotonic() + args.hold if args.hold else None
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                print("\ntearing down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
