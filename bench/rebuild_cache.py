"""The Redis ranking cache at N users: how long a rebuild takes against a floor, and how long
the event loop is blocked while the cache is rebuilt and checked, against the same probe on
an idle loop, all in one run on the same Redis and PostgreSQL:

- floor: a bare pipelined ``ZADD`` of the same N members into one key, in the same batches
  (the least any rebuild that keeps the spec's sorted set could cost);
- rebuild: the service's own rebuild (``CachedRanking``), streaming N users from PostgreSQL
  into fresh keys and swapping them in;
- full check: the check run after a restart or a Redis failover (every user, both ways);
- incremental check: the periodic check after 10,000 changes;
- event-loop lag: a task that asks to wake every millisecond records how late it wakes; the
  worst and 99th percentile lateness during each phase, and on an idle loop (the floor).

Everything lives in a database and under a key prefix of its own, dropped afterwards.
Run: `.venv/bin/python bench/rebuild_cache.py --users 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypeVar

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from scoreboard.database import create_engine, migrate  # noqa: E402
from scoreboard.leaderboard.cached import CachedRanking  # noqa: E402
from scoreboard.leaderboard.committed import CommittedScores  # noqa: E402
from scoreboard.leaderboard.redis_ranking import LOAD_BATCH, RedisRanking  # noqa: E402
from scoreboard.leaderboard.sql_ranking import SqlRanking  # noqa: E402
from scoreboard.records import BoardPeriod, UserScore  # noqa: E402

KEY = BoardPeriod("global", "all")
START = datetime(2026, 1, 1, tzinfo=UTC)
T = TypeVar("T")


def make_user(i: int, version: int = 1, bonus: int = 0) -> UserScore:
    return UserScore(
        user_id=f"user-{i:08d}",
        username=f"Player {i}",
        score=(i * 7919) % 100_000 + bonus,  # many ties, as real boards have
        version=version,
        last_updated=START + timedelta(milliseconds=i),
    )


class LagProbe:
    """Two figures for a phase: the longest single step the event loop ran (a callback or a
    task step: how long nothing else could run, the blocking the service controls) and how
    late a task that wants to wake every millisecond wakes (that plus the time the process
    waited for a CPU held by Redis, PostgreSQL or anything else on the machine)."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.steps: list[float] = []
        self._task: asyncio.Task[None] | None = None
        original = asyncio.events.Handle._run
        probe = self

        def timed(handle: asyncio.events.Handle) -> None:
            began = time.perf_counter()
            try:
                original(handle)
            finally:
                probe.steps.append(time.perf_counter() - began)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(0.001)
            self.lateness.append(max(0.0, loop.time() - asked - 0.001))

    async def during(self, work: Callable[[], Awaitable[T]]) -> tuple[T, float, Figures]:
        """The work's result, its seconds, and the phase's figures in ms."""
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)
        self.lateness, self.steps = [], []
        began = time.perf_counter()
        try:
            result = await work()
        finally:
            took = time.perf_counter() - began
            self._task.cancel()
        return result, took, Figures.of(self.steps, self.lateness)


class Figures(NamedTuple):
    step_max: float
    step_p99: float
    late_max: float
    late_p99: float

    @classmethod
    def of(cls, steps: list[float], lateness: list[float]) -> Figures:
        def p99(values: list[float]) -> float:
            ordered = sorted(values) or [0.0]
            return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000

        return cls(
            max(steps, default=0) * 1000, p99(steps), max(lateness, default=0) * 1000, p99(lateness)
        )

    def row(self, label: str) -> str:
        return (
            f"  {label:24}{self.step_max:8.1f}{self.step_p99:8.1f}"
            f"{self.late_max:10.1f}{self.late_p99:8.1f}"
        )


async def zadd_floor(redis: Redis, key: str, count: int) -> float:
    began = time.perf_counter()
    for start in range(0, count, LOAD_BATCH):
        users = [make_user(i) for i in range(start, min(count, start + LOAD_BATCH))]
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {user.user_id: user.score for user in users})
            await pipe.execute()
    return time.perf_counter() - began


async def fill(database_url: str, count: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table(
            "user_scores",
            records=(
                (KEY.board, KEY.period, u.user_id, u.username, u.score, u.version, u.last_updated)
                for u in map(make_user, range(count))
            ),
            columns=[
                "board_id",
                "period_key",
                "user_id",
                "username",
                "score",
                "version",
                "last_updated",
            ],
        )
        await conn.execute("ANALYZE user_scores")
    finally:
        await conn.close()


async def change(database_url: str, count: int, at: datetime) -> None:
    """``count`` committed changes (rows and audit rows), as the writer leaves them."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE user_scores SET score = score + 1, version = version + 1, "
                "last_updated = $1 WHERE user_id IN (SELECT user_id FROM user_scores "
                "ORDER BY user_id LIMIT $2)",
                at,
                count,
            )
            await conn.copy_records_to_table(
                "score_updates",
                records=(
                    (
                        str(uuid.uuid4()),
                        f"user-{i:08d}",
                        str(uuid.uuid4()),
                        "bench",
                        1,
                        '{"global":"all"}',
                        at,
                        at,
                        at,
                    )
                    for i in range(count)
                ),
                columns=[
                    "id",
                    "user_id",
                    "action_id",
                    "action_type",
                    "score_change",
                    "boards",
                    "timestamp",
                    "recorded_at",
                    "issued_at",
                ],
            )
    finally:
        await conn.close()


async def apply_changes(ranking: RedisRanking, count: int, at: datetime) -> None:
    for start in range(0, count, LOAD_BATCH):
        batch = []
        for i in range(start, min(count, start + LOAD_BATCH)):
            user = make_user(i, version=2, bonus=1)
            batch.append((KEY, UserScore(user.user_id, user.username, user.score, 2, at)))
        await ranking.apply(batch)


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A database of its own on the server, dropped afterwards (a SQLAlchemy URL)."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    url = make_url(server_url)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main(count: int, redis_url: str, server_url: str) -> None:
    redis = Redis.from_url(redis_url, socket_timeout=120)
    prefix = f"bench:{uuid.uuid4().hex}:"
    probe = LagProbe()
    async with scratch_database(server_url) as database_url:
        plain = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        engine = create_engine(database_url)
        try:
            await migrate(engine)
            await fill(plain, count)
            ranking = RedisRanking(redis, prefix)
            now = datetime.now(UTC)
            cache = CachedRanking(
                ranking,
                SqlRanking(engine),
                CommittedScores(engine),
                lambda: {KEY},
                lambda: {KEY},
                interval=3600,
                clock=lambda: now,
            )
            gc.collect()  # as `scoreboard serve` does once started (server.py)
            gc.freeze()
            gc.set_threshold(100_000, 20, 10)
            _, _, idle = await probe.during(lambda: asyncio.sleep(2))
            floor = await zadd_floor(redis, f"{prefix}floor", count)
            found, rebuild, rebuilding = await probe.during(cache.sync)
            assert found, "the first check found the empty cache and rebuilt it"
            cache._since.clear()  # as after a restart or a failover: every user, both ways
            found, full, full_check = await probe.during(cache.sync)
            assert not found, found
            changes = min(10_000, count)  # users that exist
            now = datetime.now(UTC) + timedelta(seconds=60)
            await change(plain, changes, now)
            await apply_changes(ranking, changes, now)
            found, inc, incremental = await probe.during(cache.sync)
            assert not found, found
            memory = (await redis.info("memory"))["used_memory_human"]
        finally:
            await engine.dispose()
            keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
            for start in range(0, len(keys), 1000):
                await redis.unlink(*keys[start : start + 1000])
            await redis.aclose()
    print(f"users:                    {count:,}")
    print(f"floor: bare ZADD          {floor:8.2f} s")
    print(f"rebuild from PostgreSQL   {rebuild:8.2f} s   {rebuild / floor:5.2f}x the floor")
    print(f"full check                {full:8.2f} s")
    print(f"check after {changes:,} changes {inc:6.2f} s")
    print("event loop, ms          longest step    p99   late wake    p99")
    print(idle.row("idle loop (floor)"))
    print(rebuilding.row("rebuild"))
    print(full_check.row("full check"))
    print(incremental.row("incremental check"))
    print(f"redis used memory         {memory} (with the cache loaded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SCOREBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "SCOREBOARD_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL server the bench may create a database on",
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.users, arguments.redis_url, arguments.database_url))
