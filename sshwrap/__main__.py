"""Entry point for ``python -m sshwrap``."""

from sshwrap.cli.express import main

main()
