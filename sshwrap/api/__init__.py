"""The Python API: tunnels of the caller's own, and the managed tunnels of the command line."""
