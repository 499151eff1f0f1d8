"""Every operator and order, through the real writer: whatever sequence of completions (with
ties, and several in one group commit), the committed scores are what the board's rule says
(sum adds points, best keeps the best value, latest the newest), and the in-process, SQL and
Redis rankings built from them agree with each other and with the rule, rank for rank."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.database import create_engine, migrate
from scoreboard.leaderboard.ranking import MemoryRanking, Ranking
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, Order
from scoreboard.redis_urls import RedisClient
from scoreboard.scores.models import Recorded, ScoreChange
from scoreboard.scores.repository import ScoreRepository
from tests.conftest import Backend
from tests.helpers import MovableClock, board_registry
from tests.leaderboard.test_ranking import brute_force
from tests.redis_support import async_client

BOARDS = {
    "sum-desc": ("sum", "desc"),
    "sum-asc": ("sum", "asc"),
    "best-desc": ("best", "desc"),
    "best-asc": ("best", "asc"),
    "latest-desc": ("latest", "desc"),
    "latest-asc": ("latest", "asc"),
}
USERS = [f"user{i}" for i in range(6)]


def catalog(path: Path) -> Path:
    lines = ['default = "t"\n']
    for board, (operator, order) in BOARDS.items():
        lines.append(f'[boards.{board}]\noperator = "{operator}"\norder = "{order}"\n')
        lines.append('reset = "daily"\n')  # every example gets a day (a fresh period) of its own
    lines.append(f"[types.t]\npoints = 1\nttl = 60\nboards = {list(BOARDS)!r}\n".replace("'", '"'))
    path.write_text("\n".join(lines))
    return path


Change = tuple[str, int, int, int]  # user, points, value, when its ticket was issued


def expected(board: str, batches: list[list[Change]]) -> list[tuple[str, int]]:
    """The board by its rule: (user, score) in listing order. A user reached a score in the
    batch that last changed it (best: improved it; latest: a run issued later than the one
    shown, with another value); ties list whoever reached it first, then by user id (one
    batch commits at one instant)."""
    operator, order = BOARDS[board]
    scores: dict[str, tuple[int, int]] = {}  # user -> (score, batch that reached it)
    issued: dict[str, int] = {}  # latest: when the run shown was issued
    for index, batch in enumerate(batches):
        for user, points, value, at in batch:
            old = scores.get(user)
            if operator == "sum":
                new = (old[0] if old else 0) + points
            elif operator == "latest":
                if user in issued and at <= issued[user]:
                    continue  # an older run, completed late: it does not replace a newer one
                issued[user] = at
                new = value
            elif old is None:
                new = value
            else:
                new = max(old[0], value) if order == "desc" else min(old[0], value)
            if old is None or new != old[0]:
                scores[user] = (new, index)
    sign = -1 if order == "desc" else 1
    listed = sorted(scores.items(), key=lambda item: (sign * item[1][0], item[1][1], item[0]))
    return [(user, score) for user, (score, _) in listed]


class World:
    def __init__(
        self,
        engine: AsyncEngine,
        writer: ScoreRepository,
        clock: MovableClock,
        redis: RedisClient | None,
    ) -> None:
        self.engine, self.writer, self.clock = engine, writer, clock
        self.redis = redis
        self.day = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
async def world(backend: Backend, tmp_path: Path, redis_url: str) -> AsyncIterator[World]:
    engine = create_engine(backend.database_url)
    await migrate(engine)
    clock = MovableClock()
    registry = await board_registry(engine, catalog(tmp_path / "operators.toml"), clock)
    writer = ScoreRepository(engine, registry, max_batch=8)
    await writer.start()
    redis = async_client(redis_url) if backend.redis_prefix else None
    try:
        yield World(engine, writer, clock, redis)
    finally:
        await writer.stop()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


changes_strategy = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.integers(min_value=1, max_value=3),  # points (sum boards)
        st.integers(min_value=0, max_value=4),  # value (best/latest boards): many ties
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=changes_strategy, groups=st.randoms(use_true_random=False))
async def test_every_operator_and_order_agrees_across_rankings(
    world: World, changes: list[tuple[str, int, int]], groups: random.Random
) -> None:
    # Tickets are completed in list order but were issued in any order.
    issue_order = list(range(len(changes)))
    groups.shuffle(issue_order)
    timed: list[Change] = [(*change, at) for change, at in zip(changes, issue_order, strict=True)]
    world.day += timedelta(days=1)
    world.clock.set(world.day)
    period = world.day.date().isoformat()
    recorded: list[Recorded] = []
    batches: list[list[Change]] = []
    while sum(map(len, batches)) < len(timed):  # arriving together: one group commit
        start = sum(map(len, batches))
        batches.append(timed[start : start + groups.randint(1, 5)])
        batch = [
            ScoreChange(
                user,
                user,
                str(uuid.uuid4()),
                "t",
                points,
                world.day,
                None,
                tuple(BOARDS),
                value,
                world.day - timedelta(minutes=len(timed) - at),
            )
            for user, points, value, at in batches[-1]
        ]
        recorded += await asyncio.gather(*(world.writer.record(c) for c in batch))

    memory = MemoryRanking()
    prefix = f"sbops:{uuid.uuid4().hex}:"
    rankings: dict[str, Ranking] = {"memory": memory, "sql": SqlRanking(world.engine)}
    if world.redis is not None:
        rankings["redis"] = RedisRanking(world.redis, prefix)
    applied = [(result.key, result.user) for r in recorded for result in r.boards]
    for name in ("memory", "redis"):
        if name in rankings:
            shuffled = applied[:]
            groups.shuffle(shuffled)  # post-commit updates may arrive in any order
            await rankings[name].apply(shuffled)
    try:
        for board, (_, order) in BOARDS.items():
            key = BoardPeriod(board, period, Order(order))
            committed = {u.user_id: u for u in await world.writer.load_period(key)}
            truth = brute_force(committed, Order(order))
            assert [(e.user_id, e.score) for e in truth] == expected(board, batches), board
            for name, ranking in rankings.items():
                assert await ranking.top(key, 100) == truth, (board, name)
                assert await ranking.total(key) == len(truth)
                for entry in truth:
                    assert await ranking.rank_of(key, entry.user_id) == entry, (board, name)
    finally:
        if world.redis is not None:
            keys = [k async for k in world.redis.scan_iter(f"{prefix}*")]
            if keys:
                await world.redis.delete(*keys)
