"""Keeping tunnels up: restart loop, supervisors, shared connections, hooks, events.

It may import runtime.system, client, observe and core/.
"""
