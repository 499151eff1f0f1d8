"""The live tests' real-server fixture, for the attacks that need real sockets."""

from tests.live.conftest import start_server

__all__ = ["start_server"]
