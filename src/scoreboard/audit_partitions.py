"""The audit log's monthly partitions (PostgreSQL), and its retention.

On PostgreSQL ``score_updates`` is RANGE-partitioned by month (UTC) on ``issued_at``, the
ticket's signed issue time (migration 0005). Its unique key is ``(action_id, issued_at)``: a
replay carries the same signed ``issued_at`` as the first copy, so it lands in the same
partition and meets the same unique index whatever month it arrives in. (Rows from before
the upgrade got their recorded_at as issue time; the writer looks the tickets of those days
up by action id: ``ScoreRepository._legacy_replays``.)

- **Ahead of time.** ``ensure_partitions`` creates the partitions of the current month and
  the next ``months_ahead``: ``scoreboard migrate`` calls it, and so does every instance
  each ``SCOREBOARD_PRUNE_INTERVAL`` (the period pruner's loop). There is no DEFAULT
  partition: with one, every new partition would have to scan it (and lock it) to prove it
  holds no row of the new range. Should a write still find no partition (upkeep not run for
  months, a clock far off), the writer creates the months it needs and commits the batch
  again (``ensure_months``): nothing is acknowledged before it is durable either way.
  A partition is made with ``CREATE TABLE (LIKE ...)`` then ``ATTACH PARTITION``, which takes
  only a SHARE UPDATE EXCLUSIVE lock on ``score_updates`` (``CREATE TABLE ... PARTITION OF``
  would take ACCESS EXCLUSIVE): writes and reads go on meanwhile.
- **Retention** drops whole months, never a mass DELETE: ``drop_partitions_older_than``
  detaches (``DETACH PARTITION ... CONCURRENTLY``: writes and reads go on) and drops every
  partition that ends at or before the cutoff, never the current month nor a later one, and
  never a cutoff younger than ``MIN_AUDIT_RETENTION``: a ticket lives at most
  ``MAX_TICKET_TTL`` (the catalog's bound, whatever the catalog in force says), so a replay
  of a ticket whose row is gone is refused as expired before it reaches the database. On
  SQLite (one plain table) ``delete_audit_older_than`` deletes the old rows a bounded chunk
  per transaction instead.

Instances coordinate through one advisory lock, so two of them never change the partitions
at the same time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, delete, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scoreboard.tables import score_updates

log = structlog.get_logger("scoreboard.partitions")

PARENT = "score_updates"
PREFIX = f"{PARENT}_p"  # score_updates_p2026_12: the month of December 2026 (UTC)
_NAME = re.compile(rf"^{PREFIX}(\d{{4}})_(\d{{2}})$")
MONTHS_AHEAD = 3
# The longest a ticket can live (ActionType.ttl's upper bound), whatever the catalog says
# today: a ticket issued under an earlier catalog keeps the lifetime it was signed with.
MAX_TICKET_TTL = timedelta(days=7)
MAX_CLOCK_SKEW = timedelta(hours=1)  # SCOREBOARD_CLOCK_SKEW's upper bound
MIN_AUDIT_RETENTION = timedelta(days=9)  # > MAX_TICKET_TTL + MAX_CLOCK_SKEW, with a margin
DELETE_CHUNK = 10_000  # SQLite: rows per transaction when old audit rows are deleted
LOCK_KEY = 0x73636F7265_7061  # pg advisory lock: partition upkeep, one instance at a time
LOCK_TIMEOUT = "5s"
BUSY_WAIT = 10.0  # seconds a retention run waits for another instance's upkeep


class PartitionsBusy(RuntimeError):
    """Another instance is changing the audit partitions right now."""


@dataclass(frozen=True, slots=True)
class AuditPruned:
    """What a retention run removed: whole partitions (PostgreSQL) or rows (SQLite)."""

    cutoff: datetime
    partitioned: bool  # PostgreSQL: whole partitions went; SQLite: rows
    partitions: list[str]
    rows: int


def month_start(at: datetime) -> datetime:
    """The first instant of ``at``'s month, in UTC."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    month = month_start(month)
    return f"{PREFIX}{month.year:04d}_{month.month:02d}"


def month_of(name: str) -> datetime | None:
    """The month a partition of ours holds (None: not one of ours, left alone)."""
    found = _NAME.match(name)
    if found is None or not 1 <= int(found[2]) <= 12:
        return None
    return datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC)


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def check_cutoff(cutoff: datetime, now: datetime) -> None:
    """Refuse a retention that could re-open a replay window (or reach this month)."""
    if cutoff > now - MIN_AUDIT_RETENTION:
        raise ValueError(
            f"audit rows must be kept at least {MIN_AUDIT_RETENTION.days} days (tickets live "
            f"up to {MAX_TICKET_TTL.days} days): the cutoff {cutoff.isoformat()} is too recent"
        )


# -- the sync parts: they run inside migration 0005 too --------------------------------------


def attached(conn: Connection) -> dict[str, bool]:
    """The partitions of score_updates by name, each with whether a detach is pending."""
    rows = conn.execute(
        text(
            "SELECT c.relname, i.inhdetachpending FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    )
    return {str(name): bool(pending) for name, pending in rows}


def create_months(conn: Connection, months: Iterable[datetime]) -> list[str]:
    """Create and attach the partitions of these months that do not exist yet; their names.

    The new table is empty, so ATTACH has nothing to scan, and it builds the partition's
    share of every index of score_updates (the unique key among them) as it attaches it."""
    existing = attached(conn)
    created: list[str] = []
    for month in sorted({month_start(m) for m in months}):
        name = partition_name(month)
        if name in existing:
            continue
        start, end = month.isoformat(), add_months(month, 1).isoformat()
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        conn.exec_driver_sql(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{start}') TO ('{end}')"
        )
        created.append(name)
    return created


def months_from(first: datetime, last: datetime) -> list[datetime]:
    """Every month from ``first``'s through ``last``'s."""
    month, end, months = month_start(first), month_start(last), []
    while month <= end:
        months.append(month)
        month = add_months(month, 1)
    return months


# -- upkeep ----------------------------------------------------------------------------------


async def ensure_months(engine: AsyncEngine, instants: Iterable[datetime]) -> list[str]:
    """Make sure the months of these instants have their partitions; the ones created.
    A no-op on SQLite."""
    months = {month_start(at) for at in instants}
    if not is_postgres(engine) or not months:
        return []
    async with engine.connect() as conn:
        have = await conn.run_sync(attached)
    if all(partition_name(month) in have for month in months):
        return []
    async with engine.begin() as conn:
        # Never queue behind a long reader (everything else would queue behind us): wait a
        # little, else fail and let the next round try again.
        await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        created = await conn.run_sync(create_months, months)
    if created:
        log.info("audit_partitions_created", partitions=created)
    return created


async def ensure_partitions(
    engine: AsyncEngine, now: datetime, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """The partitions of ``now``'s month and the ``months_ahead`` after it, created where
    missing; returns the names created (none on SQLite)."""
    first = month_start(now)
    return await ensure_months(engine, [add_months(first, i) for i in range(months_ahead + 1)])


async def drop_partitions_older_than(
    engine: AsyncEngine, cutoff: datetime, *, now: datetime | None = None
) -> list[str]:
    """Detach and drop every partition whose whole month lies before ``cutoff`` (never the
    current month or a later one); the names dropped, oldest first (none on SQLite). Raises
    ValueError for a cutoff younger than MIN_AUDIT_RETENTION, PartitionsBusy when another
    instance keeps holding the upkeep lock."""
    now = now or datetime.now(UTC)
    check_cutoff(cutoff, now)
    if not is_postgres(engine):
        return []
    limit = min(cutoff, month_start(now))
    dropped: list[str] = []
    async with engine.connect() as conn:
        # DETACH ... CONCURRENTLY runs outside any transaction block.
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        if not await _try_lock(conn):
            raise PartitionsBusy("another instance is changing the audit partitions; retry")
        try:
            doomed = sorted(
                (month, name, pending)
                for name, pending in (await conn.run_sync(attached)).items()
                if (month := month_of(name)) is not None and add_months(month, 1) <= limit
            )
            for _, name, pending in doomed:
                # A detach cut short (a lost connection, a timeout) is left pending: finish it.
                how = "FINALIZE" if pending else "CONCURRENTLY"
                await conn.exec_driver_sql(f"ALTER TABLE {PARENT} DETACH PARTITION {name} {how}")
                await conn.exec_driver_sql(f"DROP TABLE {name}")
                dropped.append(name)
        finally:
            if dropped:
                log.info("audit_partitions_dropped", partitions=dropped, cutoff=cutoff.isoformat())
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            except Exception:
                # Never hand a session that may still hold the lock back to the pool: closed,
                # it releases the lock.
                await conn.invalidate()
                raise
    return dropped


async def _try_lock(conn: AsyncConnection) -> bool:
    """The upkeep lock, for this session; waits up to BUSY_WAIT for another instance."""
    waited = 0.0
    while True:
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
        if got or waited >= BUSY_WAIT:
            return bool(got)
        await asyncio.sleep(0.5)
        waited += 0.5


async def delete_audit_older_than(
    engine: AsyncEngine,
    cutoff: datetime,
    *,
    now: datetime | None = None,
    chunk: int = DELETE_CHUNK,
) -> int:
    """SQLite: delete the audit rows issued before ``cutoff``, ``chunk`` rows per (short)
    write transaction; how many. Refuses on PostgreSQL, where retention drops partitions."""
    now = now or datetime.now(UTC)
    check_cutoff(cutoff, now)
    if is_postgres(engine):
        raise ValueError("on PostgreSQL old audit rows go with their partitions")
    deleted = 0
    while True:
        async with engine.connect() as conn:
            conn = await conn.execution_options(sqlite_write=True)
            async with conn.begin():
                ids = (
                    select(score_updates.c.id)
                    .where(score_updates.c.issued_at < cutoff)
                    .limit(chunk)
                    .scalar_subquery()
                )
                result = await conn.execute(
                    delete(score_updates).where(score_updates.c.id.in_(ids))
                )
        deleted += result.rowcount
        if result.rowcount < chunk:
            return deleted


async def prune_audit(
    engine: AsyncEngine, cutoff: datetime, *, now: datetime | None = None
) -> AuditPruned:
    """Retention, as each backend does it: whole partitions on PostgreSQL, rows on SQLite."""
    if is_postgres(engine):
        dropped = await drop_partitions_older_than(engine, cutoff, now=now)
        return AuditPruned(cutoff, True, dropped, 0)
    return AuditPruned(cutoff, False, [], await delete_audit_older_than(engine, cutoff, now=now))


def may_lack_partition(exc: BaseException) -> bool:
    """Could this failure be an insert that found no partition for its row? That is a check
    violation (SQLSTATE 23514), as is ``score >= 0`` failing: whatever the server's language,
    the caller makes sure the months exist, then tries once more."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == "23514"
