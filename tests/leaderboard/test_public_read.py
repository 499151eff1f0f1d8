from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from tests.helpers import make_settings, problem


@pytest.fixture
async def public_client(tmp_path: Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db'}", tmp_path, public_read=True)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_public_read_serves_anonymous_readers_but_not_writers(
    public_client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    board = await public_client.get("/api/leaderboard")
    assert board.status_code == 200
    assert board.json() == {"leaderboard": []}
    me = await public_client.get("/api/leaderboard/me")
    problem(me, 401, "invalid_token")
    write = await public_client.post("/api/actions", json={})
    problem(write, 401, "invalid_token")
