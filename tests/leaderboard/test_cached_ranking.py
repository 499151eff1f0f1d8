"""The production ranking's sync loop (Redis in front of the database): current periods are
checked against the database at every sync, a closed period once, and all of them again
after Redis was found away."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from scoreboard.database import create_engine, migrate
from scoreboard.leaderboard.cached import CachedRanking
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, UserScore

pytest_plugins = ["tests.redis_support"]
TODAY = BoardPeriod("daily", "2026-12-02")
YESTERDAY = BoardPeriod("daily", "2026-12-01")
AT = datetime(2026, 12, 1, tzinfo=UTC)


async def test_closed_periods_are_checked_once_until_redis_goes_away(
    tmp_path: Path, redis_client: Redis, redis_prefix: str
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(engine)
    committed = {
        TODAY: [UserScore("ann", "Ann", 10, 1, AT)],
        YESTERDAY: [UserScore("ben", "Ben", 20, 1, AT)],
    }
    loads: Counter[BoardPeriod] = Counter()

    async def load(key: BoardPeriod) -> list[UserScore]:
        loads[key] += 1
        return committed[key]

    redis_ranking = RedisRanking(redis_client, redis_prefix)
    cache = CachedRanking(
        redis_ranking,
        SqlRanking(engine),
        load,
        lambda: {TODAY, YESTERDAY},
        lambda: {TODAY},
        interval=3600,
    )
    try:
        assert await cache.sync() == {
            TODAY: "user ann is missing",
            YESTERDAY: "user ben is missing",
        }
        assert (await cache.top(YESTERDAY, 5))[0].user_id == "ben"  # built from the database
        assert await cache.sync() == {}
        assert await cache.sync() == {}
        assert loads == {TODAY: 3, YESTERDAY: 1}  # the closed period was not read again

        await redis_client.delete(redis_ranking.keys(YESTERDAY).board)  # Redis loses it...
        cache._mark_stale(RedisConnectionError("gone"))  # ...while it was away
        assert await cache.sync() == {
            YESTERDAY: "structures disagree: users, leaderboard, order hold [1, 0, 1]"
        }
        assert loads == {TODAY: 4, YESTERDAY: 2}
    finally:
        await engine.dispose()
