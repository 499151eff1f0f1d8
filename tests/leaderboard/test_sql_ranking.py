"""The database fallback ranking gives exactly what the in-process ranking gives, on boards
of either order, and keeps boards and periods apart."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from scoreboard.database import create_engine, migrate
from scoreboard.leaderboard.ranking import MemoryRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, Order, UserScore
from scoreboard.tables import user_scores

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("order", list(Order))
async def test_sql_ranking_equals_memory_ranking(database_url: str, order: Order) -> None:
    rng = random.Random(7)
    key = BoardPeriod("b", "2026-12-02", order)
    neighbour = BoardPeriod("b", "2026-12-01", order)  # another period of the same board
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
                    "board_id": k.board,
                    "period_key": k.period,
                    "user_id": u.user_id,
                    "username": u.username,
                    "score": u.score + (0 if k == key else 1000),
                    "version": u.version,
                    "last_updated": u.last_updated,
                }
                for u in users
                for k in (key, neighbour)
            ],
        )
    memory = MemoryRanking()
    await memory.replace_all(key, users)
    sql = SqlRanking(engine)
    try:
        for limit in (1, 7, 10, 100):
            assert await sql.top(key, limit) == await memory.top(key, limit)
        for offset in (0, 5, 59, 60):
            assert await sql.top(key, 10, offset) == await memory.top(key, 10, offset)
        assert await sql.total(key) == 60
        some = ["u03", "u40", "u07", "nobody"]
        assert await sql.ranks_of(key, some) == await memory.ranks_of(key, some)
        for user in users:
            assert await sql.rank_of(key, user.user_id) == await memory.rank_of(key, user.user_id)
            assert await sql.around(key, user.user_id, 2) == await memory.around(
                key, user.user_id, 2
            )
        for score in range(-5, 60, 5):  # scores held, between them and beyond them
            assert await sql.rank_for(key, score) == await memory.rank_for(key, score)
        assert await sql.rank_of(key, "nobody") is None
        assert await sql.around(key, "nobody", 2) is None
        # A period nobody scored in (guards ``total`` answering 1 for an empty board).
        empty = BoardPeriod("b", "2026-12-03", order)
        assert await sql.total(empty) == await memory.total(empty) == 0
        assert await sql.top(empty, 10) == await memory.top(empty, 10) == []
        assert await sql.rank_for(empty, 10) == await memory.rank_for(empty, 10) == 1
    finally:
        await engine.dispose()
