"""The engine: one process per state dir serving tunnels over its socket, and its client.

It may import every other runtime package, never usecases/ or cli/: the
handlers it serves are registered from above (``python -m sshwrap --engine``).
"""
