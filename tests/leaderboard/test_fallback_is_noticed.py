"""The production-shape API tests must notice a Redis layer that fails: the fallback would
answer every request from PostgreSQL, and the tests would pass on a cache that never works
(a mutation run showed it: every Redis ranking read made to raise, 179 tests still green).
``tests.conftest.served_by_redis`` runs after each of them; here it is shown to catch that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from scoreboard.app import create_app
from scoreboard.leaderboard.redis_ranking import RedisRanking
from tests.conftest import Backend, served_by_redis
from tests.helpers import Api, new_user
from tests.postgres import truncate


async def test_a_redis_ranking_that_fails_fails_the_api_fixture(
    postgres_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, monkeypatch: Any
) -> None:
    await truncate(postgres_url)
    settings = Backend("postgres+redis", postgres_url, redis_url, redis_prefix).settings(tmp_path)
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        api = Api(client)
        player = new_user()
        await api.score(player)
        assert [e["userId"] for e in await api.leaderboard()] == [player]
        served_by_redis(app)  # a healthy cache passes

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise RedisConnectionError("Redis is down")

        for read in ("revision", "top", "rank_of", "total"):
            monkeypatch.setattr(RedisRanking, read, down)
        # The fallback still answers, from PostgreSQL: a plain API test cannot tell.
        assert [e["userId"] for e in await api.leaderboard()] == [player]
        with pytest.raises(AssertionError, match="Redis failed during the test"):
            served_by_redis(app)
