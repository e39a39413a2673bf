"""The functional core: profile model, validation and compilers (no processes, sockets or I/O)."""
