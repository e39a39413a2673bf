"""Observing a running tunnel: forwards verified, far ends probed, live numbers, its log.

It may import runtime.system, runtime.client and core/.
"""
