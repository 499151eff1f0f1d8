"""Acknowledged scores survive a restart, and the ranking is rebuilt from the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from httpx import AsyncClient

from tests.conftest import Backend
from tests.helpers import Api
from tests.server import ServerProcess

pytestmark = pytest.mark.slow


async def test_restart_keeps_every_score_and_rank(backend: Backend, tmp_path: Path) -> None:
    database_url = backend.database_url
    server = ServerProcess(backend.env(tmp_path), tmp_path / "server.log").start()
    try:
        async with AsyncClient(base_url=server.url) as client:
            api = Api(client)
            await api.score("alice", "big")
            await api.score("bob")
            await api.score("carol")
            before = await api.leaderboard()
    finally:
        server.stop()
    if database_url.startswith("sqlite"):
        assert (tmp_path / "scoreboard.db").stat().st_size > 0

    server.start()
    try:
        async with AsyncClient(base_url=server.url) as client:
            api = Api(client)
            assert await api.leaderboard() == before
            assert [e["userId"] for e in before] == ["alice", "bob", "carol"]
            assert (await api.score("carol"))["rank"] == 2
    finally:
        server.stop()
