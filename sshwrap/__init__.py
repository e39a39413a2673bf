"""sshwrap: declarative, named and verifiable SSH tunnels."""

__version__ = "0.1.0"
