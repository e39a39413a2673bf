"""Starting one ssh or plink client: its command, its secrets through askpass, host keys.

It may import runtime.system and core/.
"""
