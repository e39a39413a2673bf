"""System facts: the state dir and its records, processes and their identity, sockets.

It imports core/ and the package's leaf modules only.
"""
