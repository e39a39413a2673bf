"""Fixtures of the supervision tests: reuse the runtime tests' state dir and profile writer."""

from tests.runtime.conftest import runtime_paths, store, write_profile

__all__ = ["runtime_paths", "store", "write_profile"]
