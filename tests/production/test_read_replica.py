"""SCOREBOARD_DATABASE_READ_URL: reads that may lag (the leaderboard's database fallback,
the admin history) go to a replica; writes, and a writer's own rank, stay on the primary.

The "replica" here is a second database that replicates nothing, so what each read returns
shows which database answered it: its rows differ from the primary's on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from pydantic import ValidationError
from sqlalchemy import insert

from scoreboard.app import create_app
from scoreboard.database import create_engine
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, Order, UserScore
from scoreboard.tables import user_scores
from tests.helpers import Api, history_of, make_settings
from tests.postgres import temporary_database
from tests.processes import RedisServer

GLOBAL = BoardPeriod("global", "all", Order.DESC)
WHEN = datetime(2026, 12, 3, 12, tzinfo=UTC)


@pytest.fixture
def primary_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def replica_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


async def _put(url: str, user_id: str, score: int) -> None:
    """A row only this database has."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(user_scores).values(
                    board_id="global",
                    period_key="all",
                    user_id=user_id,
                    username=user_id,
                    score=score,
                    version=1,
                    last_updated=WHEN,
                )
            )
    finally:
        await engine.dispose()


async def test_lagging_reads_go_to_the_replica_and_a_writers_own_rank_to_the_primary(
    primary_url: str, replica_url: str
) -> None:
    await _put(primary_url, "on-primary", 50)
    await _put(replica_url, "on-replica", 999)
    primary, replica = create_engine(primary_url), create_engine(replica_url)
    try:
        ranking = SqlRanking(primary, replica)
        assert [e.user_id for e in await ranking.top(GLOBAL, 10)] == ["on-replica"]
        assert await ranking.total(GLOBAL) == 1
        assert await ranking.rank_of(GLOBAL, "on-primary") is None  # not on the replica
        user = UserScore("on-primary", "on-primary", 50, 1, WHEN)
        (entry,) = await ranking.apply([(GLOBAL, user)])  # the writer's own change: primary
        assert entry is not None
        assert (entry.user_id, entry.rank) == ("on-primary", 1)
    finally:
        await primary.dispose()
        await replica.dispose()


async def test_the_service_reads_history_and_its_fallback_from_the_replica(
    primary_url: str, replica_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    await _put(replica_url, "ghost", 999)
    settings = make_settings(
        primary_url,
        tmp_path,
        database_read_url=replica_url,
        redis_url=redis_server.url,
        redis_prefix="sbreplica:",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        api = Api(client)
        for _ in range(3):
            body = await api.score("alice")
        assert (body["newScore"], body["rank"]) == (30, 1)
        history = await history_of(api, "alice")
        assert history["score"] == 30  # the standing: the primary
        assert history["updates"] == []  # the audit rows: the replica, which has none

        redis_server.stop()  # reads fall back to the database: the replica answers
        board = await api.leaderboard(10)
        assert [(e["userId"], e["score"]) for e in board] == [("ghost", 999)]
        body = await api.score("alice")  # writes still go to the primary
        assert body["newScore"] == 40


def test_a_read_url_needs_postgresql_on_both_sides(tmp_path: Path, postgres_url: str) -> None:
    with pytest.raises(ValidationError, match="postgresql"):
        make_settings(postgres_url, tmp_path, database_read_url="sqlite+aiosqlite:///x.db")
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValidationError, match="needs SCOREBOARD_DATABASE_URL to be PostgreSQL"):
        make_settings(sqlite, tmp_path, database_read_url=postgres_url)
