"""What the Python API keeps for the whole calling program, as the engine keeps its own."""

from __future__ import annotations

from sshwrap.runtime.observe.readywatch import ReadyWatch
from sshwrap.store import ProfileStores

# Program-wide on purpose: the API's calls and tunnels belong to the calling program, which
# has no engine object to keep them (api/tunnel.py keeps its tunnels and their hooks).
#: Its profile stores, one per tuple of profile directories: a profile is parsed once while
#: its file stays the same, however often the program asks for it.
stores = ProfileStores()
#: The listener reads its own tunnels (sshwrap.Tunnel) share while they are verified.
ready = ReadyWatch()
