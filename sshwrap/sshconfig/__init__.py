"""Integration with ~/.ssh/config: sync profiles in as Host blocks, import tunnels from it."""
