"""The audit log (score_updates) partitioned by month on PostgreSQL, and exactly-once across
its partitions: the upgrade moves old rows into their months and keeps them unique (a ticket
completed before the upgrade still cannot score again), partitions are made ahead of time (and
on demand when a write finds none), retention drops whole months and never the current one,
and a replay that arrives in the next month is refused and scores once — on PostgreSQL, and on
SQLite where it applies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard import audit_partitions as partitions
from scoreboard.actions.catalog import ActionType
from scoreboard.app import create_app
from scoreboard.config import Settings
from scoreboard.database import _alembic_config, create_engine, migrate
from scoreboard.errors import ActionAlreadyUsed
from scoreboard.records import GLOBAL, BoardPeriod
from scoreboard.scores.models import Recorded, ScoreChange
from scoreboard.scores.repository import ScoreRepository
from scoreboard.tables import score_updates
from tests.helpers import Api, MovableClock, board_registry, forge_ticket, new_user, problem
from tests.postgres import temporary_database
from tests.production.conftest import plain_url
from tests.test_cli import run

KEY = BoardPeriod(GLOBAL, "all")
# The last minute of a month: a ticket issued now is completed, and replayed, next month.
MONTH_END = datetime(2027, 1, 31, 23, 59, 0, tzinfo=UTC)
NEXT_MONTH = datetime(2027, 2, 1, 0, 0, 30, tzinfo=UTC)


def p(year: int, month: int) -> str:
    return f"score_updates_p{year:04d}_{month:02d}"


def ticket_change(user: str, issued: datetime, at: datetime, points: int = 10) -> ScoreChange:
    """An accepted ticket as the service hands it to the writer."""
    return ScoreChange(
        user_id=user,
        username=user,
        action_id=str(uuid.uuid4()),
        action_type="instant",
        points=points,
        timestamp=at,
        client_ip="127.0.0.1",
        boards=(GLOBAL,),
        issued_at=issued,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of this test alone, migrated (PostgreSQL: by migration 0005, so the
    partitions of this month and the next three exist)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"
        return
    with temporary_database() as url:
        yield url


@pytest.fixture
def pg_database() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
async def pg_engine(pg_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_database)
    yield engine
    await engine.dispose()


async def attached(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return sorted(await conn.run_sync(partitions.attached))


async def where_stored(engine: AsyncEngine) -> dict[str, str]:
    """Each audit row's action id -> the partition it is stored in."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT action_id, tableoid::regclass::text FROM score_updates")
        )
        return {action: table for action, table in rows}


async def audit_rows(engine: AsyncEngine, action_id: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(score_updates)
            .where(score_updates.c.action_id == action_id)
        )
    return int(count or 0)


async def insert_audit(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            score_updates.insert(),
            [
                {
                    "id": str(uuid.uuid4()),
                    "user_id": "someone",
                    "action_type": "instant",
                    "score_change": 10,
                    "boards": '{"global":"all"}',
                    "timestamp": row["issued_at"],
                    "recorded_at": row["issued_at"],
                    **row,
                }
                for row in rows
            ],
        )


async def writer(engine: AsyncEngine, clock: MovableClock | None = None) -> ScoreRepository:
    boards = await board_registry(engine, clock=clock or MovableClock())
    repository = ScoreRepository(engine, boards, max_batch=8)
    await repository.start()
    return repository


# -- the upgrade ----------------------------------------------------------------------------


def _to(revision: str, *, down: bool = False) -> Any:
    def step(connection: Connection) -> None:
        (command.downgrade if down else command.upgrade)(_alembic_config(connection), revision)

    return step


# Rows written under revision 0004: (action id, recorded_at). One on each side of a month's
# end, months apart, and one a minute old whose ticket is still alive.
OLD_ROWS = [
    ("aug", datetime(2026, 8, 15, 9, 30, tzinfo=UTC)),
    ("oct-last", datetime(2026, 10, 31, 23, 59, 59, 500_000, tzinfo=UTC)),
    ("nov-first", datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
]


async def _fill_0004(engine: AsyncEngine, recent: datetime) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_to("0004"))
    async with engine.begin() as conn:
        for action_id, at in [*OLD_ROWS, ("recent", recent)]:
            await conn.execute(
                text(
                    "INSERT INTO score_updates (id, user_id, action_id, action_type, score_change, "
                    "boards, timestamp, recorded_at, client_ip) VALUES (:id, 'old-user', :a, "
                    "'instant', 10, '{\"global\":\"all\"}', :at, :at, '10.0.0.1')"
                ),
                {"id": str(uuid.uuid4()), "a": action_id, "at": at},
            )


@pytest.fixture
def empty_pg() -> Iterator[str]:
    with temporary_database(migrated=False) as url:
        yield url


async def test_the_upgrade_moves_old_rows_into_their_months_and_keeps_them_unique(
    empty_pg: str,
) -> None:
    engine = create_engine(empty_pg)
    try:
        # The recent row's ticket was issued 40 s before it was completed.
        recent = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
        await _fill_0004(engine, recent)
        await migrate(engine)

        async with engine.connect() as conn:
            kind = await conn.scalar(
                text("SELECT relkind::text FROM pg_class WHERE relname = 'score_updates'")
            )
            defaults = await conn.scalar(
                text("SELECT count(*) FROM pg_partitioned_table WHERE partdefid <> 0")
            )
            issued = dict(
                (
                    await conn.execute(select(score_updates.c.action_id, score_updates.c.issued_at))
                ).all()
            )
            unique = await conn.scalar(
                text("SELECT pg_get_indexdef('uq_score_updates_action_id'::regclass)")
            )
            horizon = await conn.scalar(text("SELECT issued_before FROM score_updates_legacy"))
        assert kind == "p"  # partitioned
        assert defaults == 0  # no DEFAULT partition
        assert "(action_id, issued_at)" in unique
        assert "UNIQUE" in unique
        now = datetime.now(UTC)
        ahead = partitions.add_months(partitions.month_start(now), 3)
        assert await attached(engine) == [
            partitions.partition_name(m)
            for m in partitions.months_from(datetime(2026, 8, 1, tzinfo=UTC), ahead)
        ]
        # Every old row survives, its issue time is its recorded_at, in that month.
        assert issued == {action: at for action, at in [*OLD_ROWS, ("recent", recent)]}
        stored = await where_stored(engine)
        assert stored["aug"] == p(2026, 8)
        assert stored["oct-last"] == p(2026, 10)
        assert stored["nov-first"] == p(2026, 11)
        assert stored["recent"] == partitions.partition_name(recent)
        assert horizon is not None
        assert horizon >= recent + timedelta(minutes=59)

        # The same key cannot be stored twice.
        with pytest.raises(IntegrityError):
            await insert_audit(engine, [{"action_id": "aug", "issued_at": OLD_ROWS[0][1]}])

        # The recent row's ticket comes back with its true (signed) issue time, which is
        # not the recorded_at its row got: still refused. A new ticket scores.
        repository = await writer(engine)
        try:
            true_issue = recent - timedelta(seconds=40)
            replay = replace(
                ticket_change("old-user", true_issue, datetime.now(UTC)), action_id="recent"
            )
            with pytest.raises(ActionAlreadyUsed):
                await repository.record(replay)
            fresh = ticket_change("old-user", datetime.now(UTC), datetime.now(UTC))
            assert isinstance(await repository.record(fresh), Recorded)
            # In a batch too, first copy or not.
            outcomes = await repository.record_many([replay, fresh, replace(replay)])
            assert [type(o) for o in outcomes] == [ActionAlreadyUsed] * 3
        finally:
            await repository.stop()
        assert await audit_rows(engine, "recent") == 1
        assert await audit_rows(engine, fresh.action_id) == 1

        # And back: the plain table, every row, action ids unique on their own.
        async with engine.begin() as conn:
            await conn.run_sync(_to("0004", down=True))
        async with engine.connect() as conn:
            kind = await conn.scalar(
                text("SELECT relkind::text FROM pg_class WHERE relname = 'score_updates'")
            )
            actions = (await conn.execute(text("SELECT action_id FROM score_updates"))).scalars()
            leftovers = await conn.scalar(
                text("SELECT count(*) FROM pg_class WHERE relname LIKE 'score_updates_%'")
            )
        assert kind == "r"
        assert sorted(actions) == sorted(
            ["aug", "oct-last", "nov-first", "recent", fresh.action_id]
        )
        assert leftovers == 0  # no partition, no legacy table left behind
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO score_updates (id, user_id, action_id, action_type, "
                        "score_change, boards, timestamp, recorded_at) VALUES ('x', 'u', "
                        "'aug', 'instant', 1, '{}', now(), now())"
                    )
                )
        await migrate(engine)  # and up again
        assert len(await where_stored(engine)) == 5
    finally:
        await engine.dispose()


async def test_a_fresh_database_has_no_legacy_horizon(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM score_updates_legacy")) == 0


def test_the_retention_floor_outlives_every_ticket_the_catalog_allows() -> None:
    """MAX_TICKET_TTL and MAX_CLOCK_SKEW are the bounds the catalog and the settings enforce:
    a retention at the floor never removes the row of a ticket that can still be completed."""
    ttl_bounds = [m.le for m in ActionType.model_fields["ttl"].metadata if hasattr(m, "le")]
    skew_bounds = [m.le for m in Settings.model_fields["clock_skew"].metadata if hasattr(m, "le")]
    assert ttl_bounds == [partitions.MAX_TICKET_TTL.total_seconds()]
    assert skew_bounds == [partitions.MAX_CLOCK_SKEW.total_seconds()]
    assert partitions.MIN_AUDIT_RETENTION > partitions.MAX_TICKET_TTL + partitions.MAX_CLOCK_SKEW


# -- partitions ahead of time ---------------------------------------------------------------


async def test_partitions_are_created_months_ahead_of_now_and_only_once(
    pg_engine: AsyncEngine,
) -> None:
    now = datetime(2041, 10, 20, 8, 0, tzinfo=UTC)
    created = await partitions.ensure_partitions(pg_engine, now, months_ahead=3)
    assert created == [p(2041, 10), p(2041, 11), p(2041, 12), p(2042, 1)]
    assert await partitions.ensure_partitions(pg_engine, now, months_ahead=3) == []
    assert await partitions.ensure_partitions(pg_engine, now, months_ahead=4) == [p(2042, 2)]
    # The bounds are UTC months, half-open: the last microsecond of October is October's.
    last = datetime(2041, 10, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    await insert_audit(
        pg_engine,
        [
            {"action_id": "oct", "issued_at": last},
            {"action_id": "nov", "issued_at": last + timedelta(microseconds=1)},
        ],
    )
    stored = await where_stored(pg_engine)
    assert (stored["oct"], stored["nov"]) == (p(2041, 10), p(2041, 11))


async def test_the_running_service_keeps_the_months_ahead(
    pg_database: str, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Every instance's pruner loop makes the partitions of its clock's month and the next
    three, from the moment it starts."""
    from tests.helpers import make_settings

    later = datetime(2045, 6, 10, tzinfo=UTC)
    wanted = [p(2045, 6), p(2045, 7), p(2045, 8), p(2045, 9)]
    settings = make_settings(pg_database, tmp_path)
    async with AsyncTestClient(app=create_app(settings, clock=MovableClock(later))):
        for _ in range(100):
            if set(wanted) <= set(await attached(pg_engine)):
                break
            await asyncio.sleep(0.1)
    assert set(wanted) <= set(await attached(pg_engine))
    assert p(2045, 10) not in await attached(pg_engine)


async def test_a_write_whose_month_has_no_partition_makes_it_and_is_kept(
    pg_engine: AsyncEngine,
) -> None:
    """Upkeep did not run (a clock far ahead, say): the writer creates the month and commits
    the batch again; nothing is lost and nothing is written twice."""
    later = datetime(2031, 5, 6, 12, 0, tzinfo=UTC)
    assert p(2031, 5) not in await attached(pg_engine)
    repository = await writer(pg_engine, MovableClock(later))
    try:
        changes = [
            ticket_change(f"far-{i}", later - timedelta(seconds=30), later) for i in range(3)
        ]
        outcomes = await repository.record_many(changes)
        assert all(isinstance(o, Recorded) for o in outcomes)
        assert {u.user_id: u.score for u in await repository.load_period(KEY)} == {
            "far-0": 10,
            "far-1": 10,
            "far-2": 10,
        }
    finally:
        await repository.stop()
    stored = await where_stored(pg_engine)
    assert {stored[c.action_id] for c in changes} == {p(2031, 5)}


async def test_sqlite_has_no_partitions_to_make_or_drop(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}")
    try:
        await migrate(engine)
        now = datetime.now(UTC)
        assert await partitions.ensure_partitions(engine, now) == []
        assert await partitions.drop_partitions_older_than(engine, now - timedelta(days=400)) == []
    finally:
        await engine.dispose()


# -- exactly once across a month's end ------------------------------------------------------


async def test_a_replay_in_the_next_month_is_refused_and_scores_once(any_database: str) -> None:
    engine = create_engine(any_database)
    await migrate(engine)
    clock = MovableClock(MONTH_END + timedelta(seconds=20))
    repository = await writer(engine, clock)
    try:
        first = ticket_change("edge", MONTH_END - timedelta(seconds=30), clock())
        assert isinstance(await repository.record(first), Recorded)
        clock.set(NEXT_MONTH)  # a new month: on PostgreSQL, a new partition
        replay = replace(first, timestamp=clock())
        with pytest.raises(ActionAlreadyUsed):
            await repository.record(replay)
        outcomes = await repository.record_many(
            [replace(first), ticket_change("other", clock(), clock())]
        )
        assert [type(o) for o in outcomes] == [ActionAlreadyUsed, Recorded]
        assert {u.user_id: u.score for u in await repository.load_period(KEY)} == {
            "edge": 10,
            "other": 10,
        }
    finally:
        await repository.stop()
    assert await audit_rows(engine, first.action_id) == 1
    if engine.dialect.name == "postgresql":
        assert (await where_stored(engine))[first.action_id] == p(2027, 1)
    await engine.dispose()


async def test_a_ticket_replayed_over_http_next_month_is_refused(
    any_database: str, tmp_path: Path
) -> None:
    """The whole path on a frozen clock: a ticket issued a minute before the month ends is
    completed, then sent again in the next month (within its lifetime): 409, one score."""
    from tests.helpers import make_settings

    clock = MovableClock(MONTH_END + timedelta(seconds=10))
    settings = make_settings(any_database, tmp_path)
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        api = Api(client, clock=clock)
        user = new_user()
        ticket = forge_ticket(user, issued_at=MONTH_END - timedelta(seconds=50), ttl=600)
        done = await api.complete(user, ticket)
        assert done.status_code == 200, done.text
        clock.set(NEXT_MONTH)
        problem(await api.complete(user, ticket), 409, "action_already_used")
        board = await api.leaderboard()
        assert [(e["userId"], e["score"]) for e in board if e["userId"] == user] == [(user, 10)]
    engine = create_engine(any_database)
    try:
        async with engine.connect() as conn:
            rows = await conn.scalar(
                select(func.count())
                .select_from(score_updates)
                .where(score_updates.c.user_id == user)
            )
        assert rows == 1
    finally:
        await engine.dispose()


# -- retention --------------------------------------------------------------------------------


async def test_retention_drops_whole_old_months_and_nothing_current(pg_engine: AsyncEngine) -> None:
    now = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)
    old_months = [
        datetime(y, m, 1, tzinfo=UTC) for y, m in ((2025, 12), (2026, 1), (2026, 2), (2026, 3))
    ]
    await partitions.ensure_months(pg_engine, old_months)
    await insert_audit(
        pg_engine,
        [
            {"action_id": f"m{i}", "issued_at": month + timedelta(days=3)}
            for i, month in enumerate(old_months)
        ]
        + [{"action_id": "current", "issued_at": now - timedelta(days=1)}],
    )
    before = set(await attached(pg_engine))

    # 400 days before now is 2026-02-08: January 2026 and older lie wholly before it;
    # February straddles it and stays.
    cutoff = now - timedelta(days=400)
    dropped = await partitions.drop_partitions_older_than(pg_engine, cutoff, now=now)
    assert dropped == [p(2025, 12), p(2026, 1)]
    assert set(await attached(pg_engine)) == before - set(dropped)
    assert sorted(await where_stored(pg_engine)) == ["current", "m2", "m3"]
    async with pg_engine.connect() as conn:  # dropped, not just detached
        gone = await conn.scalar(
            text("SELECT count(*) FROM pg_class WHERE relname = ANY(:names)"), {"names": dropped}
        )
    assert gone == 0
    assert await partitions.drop_partitions_older_than(pg_engine, cutoff, now=now) == []

    # The shortest retention allowed never reaches the current month (nor a later one).
    shortest = now - partitions.MIN_AUDIT_RETENTION
    dropped = await partitions.drop_partitions_older_than(pg_engine, shortest, now=now)
    assert p(2027, 3) not in dropped
    assert p(2027, 2) in dropped
    assert "current" in await where_stored(pg_engine)
    assert all(name >= p(2027, 3) for name in await attached(pg_engine))

    # Shorter than a ticket can live: refused, nothing touched.
    with pytest.raises(ValueError, match="at least 9 days"):
        await partitions.drop_partitions_older_than(pg_engine, now - timedelta(days=2), now=now)


async def test_a_detach_cut_short_is_finished_by_the_next_run(
    pg_database: str, pg_engine: AsyncEngine
) -> None:
    """DETACH ... CONCURRENTLY waits for the transactions that may still see the partition;
    cut short (a timeout, a lost connection) it leaves the partition "detach pending". The
    next run finishes the detach (FINALIZE) and drops it."""
    await partitions.ensure_months(pg_engine, [datetime(2025, 1, 1, tzinfo=UTC)])
    reader = await asyncpg.connect(plain_url(pg_database))
    detacher = await asyncpg.connect(plain_url(pg_database))
    try:
        snapshot = reader.transaction(isolation="repeatable_read")
        await snapshot.start()
        await reader.fetch("SELECT count(*) FROM score_updates")  # a reader that stays
        await detacher.execute("SET statement_timeout = '300ms'")
        with pytest.raises(asyncpg.QueryCanceledError):
            await detacher.execute(
                f"ALTER TABLE score_updates DETACH PARTITION {p(2025, 1)} CONCURRENTLY"
            )
        await snapshot.rollback()
    finally:
        await reader.close()
        await detacher.close()
    async with pg_engine.connect() as conn:
        assert (await conn.run_sync(partitions.attached))[p(2025, 1)] is True  # pending
    cutoff = datetime(2026, 1, 1, tzinfo=UTC)
    assert await partitions.drop_partitions_older_than(pg_engine, cutoff) == [p(2025, 1)]
    assert p(2025, 1) not in await attached(pg_engine)


async def test_sqlite_retention_deletes_old_rows_in_chunks(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}")
    try:
        await migrate(engine)
        now = datetime.now(UTC)
        old = now - timedelta(days=500)
        await insert_audit(
            engine,
            [{"action_id": f"old-{i}", "issued_at": old + timedelta(minutes=i)} for i in range(25)]
            + [{"action_id": "kept", "issued_at": now - timedelta(days=30)}],
        )
        cutoff = now - timedelta(days=400)
        assert await partitions.delete_audit_older_than(engine, cutoff, now=now, chunk=10) == 25
        async with engine.connect() as conn:
            left = (await conn.execute(select(score_updates.c.action_id))).scalars().all()
        assert left == ["kept"]
        with pytest.raises(ValueError, match="at least 9 days"):
            await partitions.delete_audit_older_than(engine, now - timedelta(days=1), now=now)
    finally:
        await engine.dispose()


# -- the command line -----------------------------------------------------------------------


def test_migrate_and_prune_on_the_command_line(tmp_path: Path) -> None:
    """`scoreboard migrate` keeps the months ahead; `scoreboard prune --audit-older-than 400d`
    drops a month of two years ago, and keeps this month's rows."""
    with temporary_database(migrated=False) as url:
        env = {"SCOREBOARD_DATABASE_URL": url, "SCOREBOARD_AUTO_MIGRATE": "false"}
        migrated = run("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        now = datetime.now(UTC)
        this_month = partitions.month_start(now)
        long_ago = partitions.add_months(this_month, -24)

        async def fill() -> list[str]:
            engine = create_engine(url)
            try:
                await partitions.ensure_months(engine, [long_ago])
                await insert_audit(
                    engine,
                    [
                        {"action_id": "long-ago", "issued_at": long_ago + timedelta(days=1)},
                        {"action_id": "today", "issued_at": now},
                    ],
                )
                return await attached(engine)
            finally:
                await engine.dispose()

        before = asyncio.run(fill())
        expected_ahead = [
            partitions.partition_name(partitions.add_months(this_month, i)) for i in range(4)
        ]
        assert set(expected_ahead) <= set(before)

        pruned = run("prune", "--audit-older-than", "400d", env=env, cwd=tmp_path)
        assert pruned.returncode == 0, pruned.stderr
        old_name = partitions.partition_name(long_ago)
        assert f"dropped 1 partitions ({old_name})" in pruned.stderr

        async def after() -> tuple[list[str], dict[str, str]]:
            engine = create_engine(url)
            try:
                return await attached(engine), await where_stored(engine)
            finally:
                await engine.dispose()

        left, stored = asyncio.run(after())
        assert sorted(left) == sorted(set(before) - {old_name})
        assert list(stored) == ["today"]

        again = run("prune", "--audit-older-than", "400d", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "dropped 0 partitions" in again.stderr

        refused = run("prune", "--audit-older-than", "7d", env=env, cwd=tmp_path)
        assert refused.returncode == 2
        assert "at least 9d" in " ".join(refused.stderr.replace("│", " ").split())
        assert "Traceback" not in refused.stderr
