"""The database fallback ranking gives exactly what the in-process ranking gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from scoreboard.database import create_engine, migrate
from scoreboard.leaderboard.ranking import MemoryRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.scores.models import UserScore
from scoreboard.tables import user_scores

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_sql_ranking_equals_memory_ranking(database_url: str) -> None:
    rng = random.Random(7)
    users = [
        UserScore(
            f"u{i:02d}",
            f"name{i}",
            rng.randint(0, 5) * 10,
            1,
            T0 + timedelta(seconds=rng.randint(0, 3)),
        )
        for i in range(60)
    ]
    engine = create_engine(database_url)
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(
            insert(user_scores),
            [
                {
                    "user_id": u.user_id,
                    "username": u.username,
                    "score": u.score,
                    "version": u.version,
                    "last_updated": u.last_updated,
                }
                for u in users
            ],
        )
    memory = MemoryRanking()
    await memory.replace_all(users)
    sql = SqlRanking(engine)
    try:
        for limit in (1, 7, 10, 100):
            assert await sql.top(limit) == await memory.top(limit)
        for user in users:
            assert await sql.rank_of(user.user_id) == await memory.rank_of(user.user_id)
            assert await sql.around(user.user_id, 2) == await memory.around(user.user_id, 2)
        assert await sql.rank_of("nobody") is None
        assert await sql.around("nobody", 2) is None
    finally:
        await engine.dispose()
