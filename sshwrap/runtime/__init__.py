"""The imperative shell around tunnels: processes, sockets, state and verification."""
