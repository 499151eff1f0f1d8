"""The production ranking: Redis in front, the database behind.

Reads come from Redis. While Redis is away (or the cache is not yet checked) they come from
the database instead, so the leaderboard keeps answering. A write that misses Redis marks
the cache stale; the sync loop checks it in full as soon as Redis answers again, and changes
go to Redis again from that moment, before the check, so none falls between the two.

Every ``interval`` seconds the current period of each board is checked, and what a check
costs follows the changes, not the users (``drift`` says how a user is judged):

1. every user the audit log shows changed since the last check (minus the grace,
   ``SCOREBOARD_CACHE_GRACE``, for clocks and commits in flight);
2. the next ``audit_users`` users of the period in user id order, and the next
   ``audit_users`` entries of the cached users hash (HSCAN), so that a cache damaged from
   outside is found within ``users / audit_users`` checks;
3. in every look, that the three structures hold the same number of users.

A wrong user is put back from the database by a version-checked script (``REPAIR``); a
period whose structures disagree is rebuilt by streaming the database into fresh keys,
``LOAD_BATCH`` users at a time. Checks and rebuilds give the event loop back after every
chunk. A closed period is checked in full once; all periods are checked in full again
after Redis was found away or its server changed (a restart or a failover). One instance
checks a period at a time (``check_lock``) and one rebuilds it (``rebuild_lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from scoreboard.clock import Clock, system_clock
from scoreboard.leaderboard.committed import CommittedScores
from scoreboard.leaderboard.drift import judge, structure_problem
from scoreboard.leaderboard.ranking import Applied, Neighbourhood, RankedEntry
from scoreboard.leaderboard.redis_ranking import LOAD_BATCH, RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.metrics import Metrics
from scoreboard.records import BoardPeriod, UserScore
from scoreboard.redis_urls import REDIS_FAILED

log = structlog.get_logger("scoreboard.cache")
T = TypeVar("T")
STALE_RETRY = 1.0
READ_OPERATIONS = ("revision", "top", "total", "rank", "around")
GRACE = timedelta(seconds=30)  # a change this recent may still be on its way to Redis
CHUNK = 200  # users per look: a few ms of Python between two awaits
READ_CHUNK = 500  # users per read of the rolling audit (fewer database round trips)
CHANGES_PER_SYNC = 200_000  # audit rows read per sync; the next sync goes on from there
AUDIT_USERS = 10_000  # users of the rolling audit per period and check (each direction)
KEPT_PROBLEMS = 20  # drift reasons kept per check (the rest are counted)


@dataclass
class Findings:
    """What a check found in one period."""

    problems: list[str] = field(default_factory=list)  # the first KEPT_PROBLEMS of them
    found: int = 0  # drifted users in all
    looked: int = 0  # users compared
    repaired: int = 0
    rebuilt: str | None = None  # why the period was rebuilt

    def add(self, problems: Iterable[str]) -> None:
        for problem in problems:
            self.found += 1
            if len(self.problems) < KEPT_PROBLEMS:
                self.problems.append(problem)

    def summary(self) -> str | None:
        if self.rebuilt:
            return f"rebuilt: {self.rebuilt}"
        if not self.found:
            return None
        more = self.found - 1
        return self.problems[0] + (f" (and {more} more)" if more else "")


class CachedRanking:
    def __init__(
        self,
        cache: RedisRanking,
        database: SqlRanking,
        committed: CommittedScores,
        readable: Callable[[], Iterable[BoardPeriod]],
        current: Callable[[], Iterable[BoardPeriod]],
        interval: float,
        *,
        clock: Clock = system_clock,
        audit_users: int = AUDIT_USERS,
        grace: timedelta = GRACE,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics = metrics or Metrics()
        reads = metrics.cache_reads
        self._counts = {
            (op, result): reads.labels(op, result)
            for op in READ_OPERATIONS
            for result in ("hit", "miss", "fallback")
        }
        self._cache = cache
        self._database = database
        self._committed = committed
        self._readable = readable
        self._current = current
        self._interval = interval
        self._clock = clock
        self._audit_users = audit_users
        self._grace = grace
        self._settled: set[BoardPeriod] = set()  # closed periods found equal to the database
        self._since: dict[BoardPeriod, datetime] = {}  # current periods: check changes from
        self._cursor: dict[BoardPeriod, str] = {}  # rolling audit: the last user id checked
        self._scan: dict[BoardPeriod, int] = {}  # rolling audit: the HSCAN cursor
        self._server: str | None = None
        self.stale = True  # reads: until the first sync has checked it
        self.failures = 0  # Redis errors seen: each one sends reads to the database for a while
        self._writable = False  # writes: until Redis answered
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.create_task(self._sync_loop(), name="cache-sync")

    async def stop(self) -> None:
        self._stopping = True  # see Hub.stop: a cancellation can be lost inside redis-py
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(3):  # a sync stuck in Redis must not block shutdown
                    await self._task

    async def _read(
        self,
        operation: str,
        from_cache: Callable[[], Awaitable[T]],
        from_db: Callable[[], Awaitable[T]],
    ) -> T:
        """From Redis (a hit); from the database when Redis fails now (a miss) or failed
        recently and has not been checked since (a fallback)."""
        if not self.stale:
            try:
                answer = await from_cache()
            except REDIS_FAILED as exc:
                self._mark_stale(exc)
                self._counts[operation, "miss"].inc()
            else:
                self._counts[operation, "hit"].inc()
                return answer
        else:
            self._counts[operation, "fallback"].inc()
        return await from_db()

    def _mark_stale(self, exc: BaseException) -> None:
        if not self.stale:
            log.warning("cache_unavailable", error=type(exc).__name__)
        self.failures += 1
        self.stale = True
        self._metrics.cache_stale.set(1)
        self._writable = False
        # What was checked stays checked: a Redis that lost data has a new run_id (a restart
        # or a failover), and the changes made meanwhile are in the audit log.
        self._wake.set()

    async def revision(self, key: BoardPeriod) -> int:
        return await self._read(
            "revision", lambda: self._cache.revision(key), lambda: self._database.revision(key)
        )

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]:
        return await self._read(
            "top",
            lambda: self._cache.top(key, limit, offset),
            lambda: self._database.top(key, limit, offset),
        )

    async def total(self, key: BoardPeriod) -> int:
        return await self._read(
            "total", lambda: self._cache.total(key), lambda: self._database.total(key)
        )

    async def rank_for(self, key: BoardPeriod, score: int) -> int:
        return await self._read(
            "rank",
            lambda: self._cache.rank_for(key, score),
            lambda: self._database.rank_for(key, score),
        )

    async def rank_of(self, key: BoardPeriod, user_id: str) -> RankedEntry | None:
        return await self._read(
            "rank",
            lambda: self._cache.rank_of(key, user_id),
            lambda: self._database.rank_of(key, user_id),
        )

    async def ranks_of(self, key: BoardPeriod, user_ids: Sequence[str]) -> list[RankedEntry]:
        return await self._read(
            "rank",
            lambda: self._cache.ranks_of(key, user_ids),
            lambda: self._database.ranks_of(key, user_ids),
        )

    async def around(self, key: BoardPeriod, user_id: str, span: int) -> Neighbourhood | None:
        return await self._read(
            "around",
            lambda: self._cache.around(key, user_id, span),
            lambda: self._database.around(key, user_id, span),
        )

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        if self._writable:
            try:
                return await self._cache.apply(changes)
            except REDIS_FAILED as exc:  # the database has it; the next sync puts it in the cache
                self._mark_stale(exc)
        return await self._database.apply(changes)

    async def replace_all(self, key: BoardPeriod, users: Iterable[UserScore]) -> None:
        await self._cache.replace_all(key, users)

    async def drop(self, key: BoardPeriod) -> None:
        try:
            await self._cache.drop(key)
        except REDIS_FAILED as exc:  # a later prune drops it again
            self._mark_stale(exc)

    async def sync(self) -> dict[BoardPeriod, str]:
        """Check every readable period that needs it; returns what was wrong where."""
        found: dict[BoardPeriod, str] = {}
        try:
            server = await self._cache.server_id()
            self._writable = True  # Redis answers: changes go to it again, before the check
            if server != self._server:
                if self._server is not None:
                    log.warning("cache_server_changed")
                self._server = server
                self._settled.clear()  # it may have lost anything: every period in full
                self._since.clear()
            readable, current = set(self._readable()), set(self._current())
            self._forget(readable, current)
            for key in sorted(self._settled, key=_order):  # one cheap look each: still whole?
                look = await self._cache.inspect(key, [])
                if not look.complete or len(set(look.counts)) != 1:
                    self._settled.discard(key)
            started, began = self._clock(), time.perf_counter()
            looked = 0
            changes = await self._changes()
            for key in sorted(readable - self._settled, key=_order):
                full = key not in self._since
                changed, resume_at = changes.get(key, (set(), None))
                findings = await self._check(key, changed, full)
                if findings is None:  # another instance is checking or rebuilding it
                    continue
                self._writable = True
                looked += findings.looked
                if summary := findings.summary():
                    found[key] = summary
                if key not in current:
                    self._settled.add(key)
                else:
                    self._since[key] = resume_at or started - self._grace
        except REDIS_FAILED as exc:
            self._mark_stale(exc)
            return found
        log.info(
            "cache_checked",
            users=looked,
            drifted=len(found),
            ms=round((time.perf_counter() - began) * 1000),
        )
        if self.stale:
            log.info("cache_ready", periods=len(readable))
        self.stale = False
        self._metrics.cache_stale.set(0)
        self._writable = True
        return found

    def _forget(self, readable: set[BoardPeriod], current: set[BoardPeriod]) -> None:
        """Drop what is kept about periods no longer readable (or no longer current)."""
        self._settled &= readable
        for gone in set(self._since) - current:
            del self._since[gone]
        for kept in (self._cursor, self._scan):
            for gone in set(kept) - readable:
                del kept[gone]

    async def _changes(self) -> dict[BoardPeriod, tuple[set[str], datetime | None]]:
        """The users changed since each current period's last check, by the audit log: one
        read per distinct starting point (usually one for all), so a period another instance
        keeps checking does not hold the others back. With each, where to go on from when a
        read stopped at CHANGES_PER_SYNC rows."""
        by_since: dict[datetime, list[BoardPeriod]] = defaultdict(list)
        for key, since in self._since.items():
            by_since[since].append(key)
        changes: dict[BoardPeriod, tuple[set[str], datetime | None]] = {}
        for since, keys in by_since.items():
            read = await self._committed.changed_since(since, CHANGES_PER_SYNC)
            for key in keys:
                changes[key] = (read.users.get((key.board, key.period), set()), read.resume_at)
        return changes

    async def _check(self, key: BoardPeriod, changed: set[str], full: bool) -> Findings | None:
        async with self._cache.check_lock(key) as mine:
            if not mine:
                return None
            findings = Findings()
            self._metrics.cache_checks.inc()
            try:
                try:
                    await self._look_through(key, changed, full, findings)
                except Incomplete:  # keys lost, then remade by a change: look at everyone
                    full = True
                    await self._look_through(key, set(), full, findings)
                if full:
                    await self._cache.mark_complete(key)
            except Rebuild as needed:
                findings.rebuilt = str(needed)
                if not await self._rebuild(key, findings.rebuilt):
                    return None  # another instance is rebuilding it: not checked here
            if findings.found:
                self._metrics.cache_drift.inc(findings.found)
                log.warning(
                    "cache_drift",
                    board=key.board,
                    period=key.period,
                    found=findings.found,
                    repaired=findings.repaired,
                    first=findings.problems[:3],
                )
            return findings

    async def _look_through(
        self, key: BoardPeriod, changed: set[str], full: bool, findings: Findings
    ) -> None:
        ordered = list(changed)
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            await self._look(key, await self._committed.users(key, chunk), chunk, full, findings)
        # The rolling audit, from the database's side (all of it in a full check)...
        budget = None if full else self._audit_users
        cursor = "" if full else self._cursor.get(key, "")
        seen = 0
        while budget is None or seen < budget:
            size = READ_CHUNK if budget is None else min(READ_CHUNK, budget - seen)
            rows = await self._committed.after(key, cursor, size)
            if not rows:
                cursor = ""
                break
            seen += len(rows)
            cursor = rows[-1].user_id
            for start in range(0, len(rows), CHUNK):
                expected = {row.user_id: row for row in rows[start : start + CHUNK]}
                await self._look(key, expected, list(expected), full, findings)
        self._cursor[key] = cursor
        # ...and from the cache's side: users the database does not have. A full pass saw
        # every user of the database; unless the cache holds more, there are none.
        if full and (await self._cache.inspect(key, [])).counts[0] <= seen:
            return
        scan = 0 if full else self._scan.get(key, 0)
        seen = 0
        while budget is None or seen < budget:
            size = CHUNK if budget is None else min(CHUNK, budget - seen)
            scan, ids = await self._cache.scan_users(key, scan, size)
            seen += len(ids)
            if ids:
                await self._look(key, await self._committed.users(key, ids), ids, full, findings)
            if scan == 0:
                break
        self._scan[key] = scan

    async def _look(
        self,
        key: BoardPeriod,
        expected: dict[str, UserScore],
        user_ids: Sequence[str],
        full: bool,
        findings: Findings,
    ) -> None:
        """Compare some users (read from the database just before) with the cache, and put
        back the wrong ones."""
        inspection = await self._cache.inspect(key, user_ids)
        findings.looked += len(user_ids)
        now = self._clock()
        if problem := structure_problem(inspection, expected, now, self._grace):
            raise Rebuild(problem)
        if not inspection.complete and not full:
            raise Incomplete
        verdict = judge(key, expected, inspection, now, self._grace)
        drops: list[tuple[str, int]] = []
        replaces: list[tuple[UserScore, int]] = []
        if verdict.suspects or verdict.ahead:
            # Read again: a change (or a first score) committed meanwhile explains either.
            again = await self._committed.users(key, [*verdict.suspects, *verdict.ahead])
            drops = [(u, v) for u, v in verdict.suspects.items() if u not in again]
            findings.add(f"user {u} is cached but not in the database" for u, _ in drops)
            for user_id, version in verdict.ahead.items():
                row = again.get(user_id)
                if row is None:
                    drops.append((user_id, version))
                    findings.add([f"user {user_id} is cached but not in the database"])
                elif row.version < version:
                    replaces.append((row, version))
                    findings.add(
                        [
                            f"user {user_id} is cached at version {version}, ahead of the "
                            f"database's {row.version}"
                        ]
                    )
        findings.add(verdict.problems)
        if verdict.repairs or drops or replaces:
            findings.repaired += await self._cache.repair(key, verdict.repairs, drops, replaces)
        await self._cache.renew_check(key)
        await asyncio.sleep(0)

    async def _rebuild(self, key: BoardPeriod, reason: str) -> bool:
        """Rebuild the period; False when another instance is rebuilding it right now."""
        async with self._cache.rebuild_lock(key) as mine:
            if not mine:
                return False
            log.warning("cache_rebuild", board=key.board, period=key.period, reason=reason)
            began = time.perf_counter()
            users = await self._cache.load(key, self._committed.stream(key, LOAD_BATCH))
            self._metrics.cache_rebuilds.inc()
            self._metrics.cache_rebuild_duration.observe(time.perf_counter() - began)
            log.info("cache_rebuilt", board=key.board, period=key.period, users=users)
            return True

    async def _sync_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), STALE_RETRY if self.stale else self._interval
                )
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.sync()
            except Exception as exc:  # the database may be away too: try again later
                log.warning("cache_sync_failed", error=type(exc).__name__)


class Rebuild(Exception):
    """A period's structures disagree: only a rebuild repairs it."""


class Incomplete(Exception):
    """The period lacks its completeness marker: its keys were lost (and maybe remade by a
    change since), so only a look at every user can tell what is missing."""


def _order(key: BoardPeriod) -> tuple[str, str]:
    return key.board, key.period
