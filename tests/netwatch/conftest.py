"""The namespace lab of tests/netns, for the network-change scenarios."""

from tests.netns.conftest import lab, you

__all__ = ["lab", "you"]
