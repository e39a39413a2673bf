"""Entry point for ``python -m sshwrap``."""

from sshwrap.cli.app import main

main()
