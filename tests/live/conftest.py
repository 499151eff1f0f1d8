"""The live suite's real-server fixtures (``start_server``, ``sqlite_url``) live in
tests/conftest.py, for every suite that starts ``scoreboard serve`` processes."""

from __future__ import annotations

from tests.server import StartServer

__all__ = ["StartServer"]
