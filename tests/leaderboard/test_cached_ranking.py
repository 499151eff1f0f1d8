"""The production ranking's cache check (Redis in front of the database), in process, on a
real Redis and a real (SQLite) database: a correct cache under a stream of writes is never
reported, each kind of damage is found and repaired, a check costs what changed (plus a
fixed rolling audit), closed periods are checked once, and everything again after Redis was
away or its server changed."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.database import create_engine, migrate, upsert_into
from scoreboard.leaderboard.cached import CachedRanking
from scoreboard.leaderboard.committed import CommittedScores
from scoreboard.leaderboard.redis_ranking import RedisRanking, cached
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, UserScore
from scoreboard.tables import score_updates, user_scores

pytest_plugins = ["tests.redis_support"]
TODAY = BoardPeriod("daily", "2026-12-02")
YESTERDAY = BoardPeriod("daily", "2026-12-01")
LONG_AGO = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class CountingScores(CommittedScores):
    """Counts the rows each read hands back, per period."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.rows: Counter[BoardPeriod] = Counter()

    async def users(self, key: BoardPeriod, user_ids: Sequence[str]) -> dict[str, UserScore]:
        found = await super().users(key, user_ids)
        self.rows[key] += len(found)
        return found

    async def after(self, key: BoardPeriod, user_id: str, limit: int) -> list[UserScore]:
        found = await super().after(key, user_id, limit)
        self.rows[key] += len(found)
        return found


class Database:
    """Commits scores the way the writer does: the row and its audit row together."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    async def commit(self, key: BoardPeriod, users: Sequence[UserScore]) -> None:
        statement = upsert_into(self.engine, user_scores)
        statement = statement.on_conflict_do_update(
            index_elements=["board_id", "period_key", "user_id"],
            set_={
                c: statement.excluded[c] for c in ("username", "score", "version", "last_updated")
            },
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                statement,
                [
                    {
                        "board_id": key.board,
                        "period_key": key.period,
                        "user_id": u.user_id,
                        "username": u.username,
                        "score": u.score,
                        "version": u.version,
                        "last_updated": u.last_updated,
                    }
                    for u in users
                ],
            )
            await conn.execute(
                score_updates.insert(),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "user_id": u.user_id,
                        "action_id": str(uuid.uuid4()),
                        "action_type": "test",
                        "score_change": 1,
                        "boards": json.dumps({key.board: key.period}),
                        "timestamp": self.clock(),
                        "recorded_at": self.clock(),
                        "issued_at": self.clock(),
                    }
                    for u in users
                ],
            )

    async def all(self, key: BoardPeriod) -> dict[str, UserScore]:
        query = select(user_scores).where(
            user_scores.c.board_id == key.board, user_scores.c.period_key == key.period
        )
        async with self.engine.connect() as conn:
            return {
                r.user_id: UserScore(r.user_id, r.username, r.score, r.version, r.last_updated)
                for r in await conn.execute(query)
            }


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def database(engine: AsyncEngine, clock: Clock) -> Database:
    return Database(engine, clock)


@pytest.fixture
def redis_ranking(redis_client: Redis, redis_prefix: str) -> RedisRanking:
    return RedisRanking(redis_client, redis_prefix)


def make_cache(
    redis_ranking: RedisRanking,
    engine: AsyncEngine,
    clock: Clock,
    readable: set[BoardPeriod],
    audit_users: int = 10_000,
) -> tuple[CachedRanking, CountingScores]:
    scores = CountingScores(engine)
    cache = CachedRanking(
        redis_ranking,
        SqlRanking(engine),
        scores,
        lambda: readable,
        lambda: {TODAY} & readable,
        interval=3600,
        clock=clock,
        audit_users=audit_users,
    )
    return cache, scores


async def settled(
    database: Database,
    redis_ranking: RedisRanking,
    engine: AsyncEngine,
    clock: Clock,
    users: Sequence[UserScore],
    audit_users: int,
) -> CachedRanking:
    """A cache of TODAY built from these committed users and checked clean once, the
    commits long out of the change window (so later checks see only what a test changes)."""
    await database.commit(TODAY, users)
    cache, _ = make_cache(redis_ranking, engine, clock, {TODAY}, audit_users=audit_users)
    clock.now += timedelta(minutes=5)
    await cache.sync()
    clock.now += timedelta(minutes=5)
    assert await cache.sync() == {}
    return cache


async def cached_board(redis_ranking: RedisRanking, key: BoardPeriod) -> dict[str, UserScore]:
    """The cache read back through the check's own look (all users, one atomic script)."""
    ids: list[str] = []
    cursor = -1
    while cursor != 0:
        cursor, found = await redis_ranking.scan_users(key, max(cursor, 0), 1000)
        ids += found
    inspection = await redis_ranking.inspect(key, ids)
    assert len(set(inspection.counts)) == 1, inspection.counts
    board: dict[str, UserScore] = {}
    for user_id, seen in inspection.users.items():
        assert seen.record is not None
        assert seen.listed
        assert seen.board_score == seen.record.score
        board[user_id] = UserScore(
            user_id,
            seen.record.username,
            seen.record.score,
            seen.record.version,
            datetime.fromtimestamp(seen.record.last_updated_us / 1e6, UTC),
        )
    return board


def scored(user_id: str, score: int, version: int, at: datetime) -> UserScore:
    return UserScore(user_id, f"name-{user_id}", score, version, at)


async def test_closed_periods_are_checked_once_until_redis_goes_away(
    engine: AsyncEngine,
    clock: Clock,
    database: Database,
    redis_ranking: RedisRanking,
    redis_client: Redis,
) -> None:
    await database.commit(TODAY, [scored("ann", 10, 1, LONG_AGO)])
    await database.commit(YESTERDAY, [scored("ben", 20, 1, LONG_AGO)])
    cache, scores = make_cache(redis_ranking, engine, clock, {TODAY, YESTERDAY})

    found = await cache.sync()  # an empty cache: both rebuilt
    assert set(found) == {TODAY, YESTERDAY}
    assert all(text.startswith("rebuilt: the cache holds nothing") for text in found.values())
    assert (await cache.top(YESTERDAY, 5))[0].user_id == "ben"
    scores.rows.clear()
    assert await cache.sync() == {}
    assert await cache.sync() == {}
    assert scores.rows[YESTERDAY] == 0  # the closed period was not read again
    assert scores.rows[TODAY] > 0

    cache._mark_stale(RedisConnectionError("gone"))  # away for a while: nothing lost
    assert await cache.sync() == {}
    assert scores.rows[YESTERDAY] == 0
    await redis_client.delete(redis_ranking.keys(YESTERDAY).board)  # a closed period damaged
    assert await cache.sync() == {
        YESTERDAY: "rebuilt: structures disagree: users, leaderboard, order hold [1, 0, 1]"
    }
    assert await cached_board(redis_ranking, YESTERDAY) == await database.all(YESTERDAY)


async def test_a_correct_cache_under_a_stream_of_writes_is_never_reported(
    engine: AsyncEngine, clock: Clock, database: Database, redis_ranking: RedisRanking
) -> None:
    """Writes commit, then reach the cache a little later (some while a check looks), the
    way instances apply them; checks run all the while, with changes well inside GRACE."""
    users = {f"u{i:03}": scored(f"u{i:03}", i, 1, LONG_AGO) for i in range(300)}
    await database.commit(TODAY, list(users.values()))
    cache, _ = make_cache(redis_ranking, engine, clock, {TODAY}, audit_users=50)
    assert set(await cache.sync()) == {TODAY}  # the first build
    rng = random.Random(7)
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            clock.now += timedelta(milliseconds=10)
            picked = rng.sample(sorted(users), 5)
            changed = []
            for user_id in picked:
                old = users[user_id]
                users[user_id] = scored(
                    user_id, old.score + rng.randint(1, 9), old.version + 1, clock()
                )
                changed.append(users[user_id])
            await database.commit(TODAY, changed)
            clock.now += timedelta(milliseconds=10)
            await asyncio.sleep(rng.random() / 100)  # in flight: committed, not yet applied
            await redis_ranking.apply([(TODAY, u) for u in changed])

    writing = asyncio.create_task(writer())
    try:
        reports = [await cache.sync() for _ in range(40)]
    finally:
        stop.set()
        await writing
    assert reports == [{}] * 40
    assert await cached_board(redis_ranking, TODAY) == await database.all(TODAY)


async def _damage(redis: Redis, ranking: RedisRanking, how: str, victim: UserScore) -> None:
    keys = ranking.keys(TODAY)
    record = cached(victim)
    if how == "keys_deleted":
        await redis.delete(*keys.all)
    elif how == "wrong_score":
        await redis.zadd(keys.board, {victim.user_id: 123_456})
    elif how == "missing_user":  # gone from all three structures alike
        await redis.hdel(keys.users, victim.user_id)
        await redis.zrem(keys.board, victim.user_id)
        await redis.zrem(keys.order, record.order_member)
    elif how == "stale_name":
        stale = UserScore(
            victim.user_id, "old-name", victim.score, victim.version, victim.last_updated
        )
        await ranking.repair(TODAY, [stale], [])
    elif how == "lost_update":  # an older version than the database's, as after a failover
        older = UserScore(victim.user_id, victim.username, 1, victim.version - 1, LONG_AGO)
        await redis.hdel(keys.users, victim.user_id)  # REPAIR never goes back a version
        await redis.zrem(keys.order, record.order_member)
        await ranking.repair(TODAY, [older], [])
    elif how == "extra_user":
        await ranking.apply([(TODAY, scored("ghost", 10**6, 1, LONG_AGO))])
    elif how == "keys_lost_then_written":  # evicted or flushed, then a change remakes them
        await redis.delete(*keys.all)
        await ranking.apply([(TODAY, scored("u0001", 10**6, 3, LONG_AGO))])
    elif how == "ahead_of_database":  # the database went back in time (a restore)
        ahead = UserScore(victim.user_id, victim.username, 999, victim.version + 5, LONG_AGO)
        await ranking.apply([(TODAY, ahead)])
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "symptom"),
    [
        ("keys_deleted", "rebuilt: the cache holds nothing"),
        ("wrong_score", "differs from the database"),
        ("missing_user", "is missing"),
        ("stale_name", "differs from the database"),
        ("lost_update", "is at version 1, not 2"),
        ("extra_user", "user ghost is cached but not in the database"),
        ("ahead_of_database", "is cached at version 7, ahead of the database's 2"),
    ],
)
async def test_damage_of_every_kind_is_found_by_the_next_check_and_repaired(
    engine: AsyncEngine,
    clock: Clock,
    database: Database,
    redis_ranking: RedisRanking,
    redis_client: Redis,
    how: str,
    symptom: str,
) -> None:
    users = [scored(f"u{i:04}", i, 2, LONG_AGO) for i in range(1, 1201)]
    # The rolling audit sees 1,000 users a check from each side: all of them in two checks.
    cache = await settled(database, redis_ranking, engine, clock, users, audit_users=1000)
    await _damage(redis_client, redis_ranking, how, users[1150])  # an untouched user
    found = [await cache.sync(), await cache.sync()]
    reports = [report[TODAY] for report in found if TODAY in report]
    assert len(reports) == 1, found
    assert symptom in reports[0]
    assert await cached_board(redis_ranking, TODAY) == await database.all(TODAY)
    assert await cache.sync() == {}


async def test_a_check_costs_the_changes_and_the_rolling_audit_not_the_users(
    engine: AsyncEngine, clock: Clock, database: Database, redis_ranking: RedisRanking
) -> None:
    users = [scored(f"u{i:05}", i, 1, LONG_AGO) for i in range(20_000)]
    await database.commit(TODAY, users)
    cache, scores = make_cache(redis_ranking, engine, clock, {TODAY}, audit_users=100)
    clock.now += timedelta(minutes=5)
    assert set(await cache.sync()) == {TODAY}  # the first check found it empty: rebuilt
    clock.now += timedelta(minutes=5)
    changed = [scored(u.user_id, u.score + 5, 2, clock()) for u in users[:37]]
    await database.commit(TODAY, changed)
    await redis_ranking.apply([(TODAY, u) for u in changed])
    scores.rows.clear()
    assert await cache.sync() == {}
    # 37 changed users, 100 users of the audit and the (up to) 100 the HSCAN brought back.
    assert 37 + 100 <= scores.rows[TODAY] <= 37 + 100 + 200


async def test_a_changed_redis_server_gets_every_period_checked_in_full(
    engine: AsyncEngine,
    clock: Clock,
    database: Database,
    redis_ranking: RedisRanking,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = [scored(f"u{i:04}", i, 1, LONG_AGO) for i in range(3000)]
    await database.commit(TODAY, users)
    cache, scores = make_cache(redis_ranking, engine, clock, {TODAY, YESTERDAY}, audit_users=10)
    clock.now += timedelta(minutes=5)
    await cache.sync()
    scores.rows.clear()
    await cache.sync()
    assert scores.rows[TODAY] <= 30
    scores.rows.clear()

    async def failed_over() -> str:
        return "another-run-id"

    monkeypatch.setattr(redis_ranking, "server_id", failed_over)
    assert await cache.sync() == {}
    assert scores.rows[TODAY] >= 3000


async def test_the_first_scores_of_a_new_period_on_their_way_are_no_drift(
    engine: AsyncEngine, clock: Clock, database: Database, redis_ranking: RedisRanking
) -> None:
    """Committed, not yet in Redis, when the period's first check runs: put in quietly."""
    await database.commit(TODAY, [scored("first", 10, 1, clock()), scored("second", 5, 1, clock())])
    cache, _ = make_cache(redis_ranking, engine, clock, {TODAY})
    assert await cache.sync() == {}
    assert await cached_board(redis_ranking, TODAY) == await database.all(TODAY)


async def test_a_repair_during_a_rebuild_survives_the_swap(
    redis_ranking: RedisRanking,
) -> None:
    old = scored("ann", 10, 1, LONG_AGO)
    newer = scored("ann", 30, 2, LONG_AGO + timedelta(minutes=1))

    async def snapshot() -> AsyncIterator[Sequence[UserScore]]:
        await redis_ranking.repair(TODAY, [newer])  # put back while the rebuild loads
        yield [old]  # the snapshot, read before that change committed

    async with redis_ranking.rebuild_lock(TODAY) as mine:
        assert mine
        await redis_ranking.load(TODAY, snapshot())
    assert (await cached_board(redis_ranking, TODAY))["ann"].version == 2


async def test_keys_lost_then_remade_by_a_change_are_found_without_waiting_for_the_audit(
    engine: AsyncEngine,
    clock: Clock,
    database: Database,
    redis_ranking: RedisRanking,
    redis_client: Redis,
) -> None:
    """Evicted or flushed keys, then one change makes the structures again (agreeing with
    each other): the missing completeness marker sends the next check through every user,
    though the rolling audit alone would take 120 checks."""
    users = [scored(f"u{i:04}", i, 2, LONG_AGO) for i in range(1, 1201)]
    cache = await settled(database, redis_ranking, engine, clock, users, audit_users=10)
    changed = scored("u0001", 10**6, 3, LONG_AGO)
    await database.commit(TODAY, [changed])
    await _damage(redis_client, redis_ranking, "keys_lost_then_written", changed)
    report = await cache.sync()
    assert "is missing" in report[TODAY]
    assert await cached_board(redis_ranking, TODAY) == await database.all(TODAY)
    assert await cache.sync() == {}
