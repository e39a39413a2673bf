"""The authentication tests' password server and clean-up, shared with the safety tests."""

from tests.auth.conftest import password_server, stop_all

__all__ = ["password_server", "stop_all"]
