"""The production ranking: Redis in front, the database behind.

Reads come from Redis. While Redis is away (or the cache is not yet checked) they come from
the database instead, so the leaderboard keeps answering. A write that misses Redis marks
the cache stale; the sync loop checks it in full as soon as Redis answers again, and changes
go to Redis again from that moment, before the check, so none falls between the two.

Every ``interval`` seconds the current period of each board is checked, and what a check
costs follows the changes, not the users (``drift`` says how a user is judged):

1. every user the audit log shows changed since the last check (minus ``GRACE``, for
   clocks and commits in flight);
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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from redis.exceptions import RedisError

from scoreboard.clock import Clock, system_clock
from scoreboard.leaderboard.committed import Changes, CommittedScores
from scoreboard.leaderboard.drift import judge, structure_problem
from scoreboard.leaderboard.ranking import Applied, Neighbourhood, RankedEntry
from scoreboard.leaderboard.redis_ranking import LOAD_BATCH, RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, UserScore

log = structlog.get_logger("scoreboard.cache")
T = TypeVar("T")
STALE_RETRY = 1.0
GRACE = timedelta(seconds=30)  # a change this recent may still be on its way to Redis
CHUNK = 200  # users per look: a few ms of Python between two awaits
READ_CHUNK = 500  # users per read of the rolling audit (fewer database round trips)
CHANGES_PER_SYNC = 200_000  # audit rows read per sync; the next sync goes on from there
AUDIT_USERS = 10_000  # users of the rolling audit per period and check (each direction)


@dataclass
class Findings:
    """What a check found in one period."""

    problems: list[str] = field(default_factory=list)
    looked: int = 0  # users compared
    repaired: int = 0
    rebuilt: str | None = None  # why the period was rebuilt

    def summary(self) -> str | None:
        if self.rebuilt:
            return f"rebuilt: {self.rebuilt}"
        if not self.problems:
            return None
        more = len(self.problems) - 1
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
    ) -> None:
        self._cache = cache
        self._database = database
        self._committed = committed
        self._readable = readable
        self._current = current
        self._interval = interval
        self._clock = clock
        self._audit_users = audit_users
        self._settled: set[BoardPeriod] = set()  # closed periods found equal to the database
        self._since: dict[BoardPeriod, datetime] = {}  # current periods: check changes from
        self._cursor: dict[BoardPeriod, str] = {}  # rolling audit: the last user id checked
        self._scan: dict[BoardPeriod, int] = {}  # rolling audit: the HSCAN cursor
        self._server: str | None = None
        self.stale = True  # reads: until the first sync has checked it
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
        self, from_cache: Callable[[], Awaitable[T]], from_db: Callable[[], Awaitable[T]]
    ) -> T:
        if not self.stale:
            try:
                return await from_cache()
            except RedisError as exc:
                self._mark_stale(exc)
        return await from_db()

    def _mark_stale(self, exc: BaseException) -> None:
        if not self.stale:
            log.warning("cache_unavailable", error=type(exc).__name__)
        self.stale = True
        self._writable = False
        self._settled.clear()  # Redis may have lost them: check every period in full again
        self._since.clear()
        self._wake.set()

    async def revision(self, key: BoardPeriod) -> int:
        return await self._read(
            lambda: self._cache.revision(key), lambda: self._database.revision(key)
        )

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]:
        return await self._read(
            lambda: self._cache.top(key, limit, offset),
            lambda: self._database.top(key, limit, offset),
        )

    async def total(self, key: BoardPeriod) -> int:
        return await self._read(lambda: self._cache.total(key), lambda: self._database.total(key))

    async def rank_of(self, key: BoardPeriod, user_id: str) -> RankedEntry | None:
        return await self._read(
            lambda: self._cache.rank_of(key, user_id),
            lambda: self._database.rank_of(key, user_id),
        )

    async def ranks_of(self, key: BoardPeriod, user_ids: Sequence[str]) -> list[RankedEntry]:
        return await self._read(
            lambda: self._cache.ranks_of(key, user_ids),
            lambda: self._database.ranks_of(key, user_ids),
        )

    async def around(self, key: BoardPeriod, user_id: str, span: int) -> Neighbourhood | None:
        return await self._read(
            lambda: self._cache.around(key, user_id, span),
            lambda: self._database.around(key, user_id, span),
        )

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        if self._writable:
            try:
                return await self._cache.apply(changes)
            except RedisError as exc:  # the database has it; the next sync puts it in the cache
                self._mark_stale(exc)
        return await self._database.apply(changes)

    async def replace_all(self, key: BoardPeriod, users: Iterable[UserScore]) -> None:
        await self._cache.replace_all(key, users)

    async def drop(self, key: BoardPeriod) -> None:
        try:
            await self._cache.drop(key)
        except RedisError as exc:  # a later prune drops it again
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
                self._settled.clear()
                self._since.clear()
            readable, current = set(self._readable()), set(self._current())
            self._settled &= readable
            for gone in set(self._since) - current:
                del self._since[gone]
            started, began = self._clock(), time.perf_counter()
            looked = 0
            incremental = [key for key in self._since if key in readable]
            changes = (
                await self._committed.changed_since(
                    min(self._since[key] for key in incremental), CHANGES_PER_SYNC
                )
                if incremental
                else Changes()
            )
            for key in sorted(readable - self._settled, key=lambda k: (k.board, k.period)):
                full = key not in self._since
                changed = changes.users.get((key.board, key.period), set())
                findings = await self._check(key, changed, full)
                if findings is None:  # another instance is checking it
                    continue
                looked += findings.looked
                if summary := findings.summary():
                    found[key] = summary
                if key not in current:
                    self._settled.add(key)
                elif changes.resume_at is not None and not full:
                    self._since[key] = changes.resume_at
                else:
                    self._since[key] = started - GRACE
        except RedisError as exc:
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
        return found

    async def _check(self, key: BoardPeriod, changed: set[str], full: bool) -> Findings | None:
        async with self._cache.check_lock(key) as mine:
            if not mine:
                return None
            findings = Findings()
            try:
                await self._look_through(key, changed, full, findings)
            except Rebuild as needed:
                findings.rebuilt = str(needed)
                await self._rebuild(key, findings.rebuilt)
            if findings.problems:
                log.warning(
                    "cache_drift",
                    board=key.board,
                    period=key.period,
                    found=len(findings.problems),
                    repaired=findings.repaired,
                    first=findings.problems[:3],
                )
            return findings

    async def _look_through(
        self, key: BoardPeriod, changed: set[str], full: bool, findings: Findings
    ) -> None:
        ordered = sorted(changed)
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            await self._look(key, await self._committed.users(key, chunk), chunk, findings)
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
                await self._look(key, expected, list(expected), findings)
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
                await self._look(key, await self._committed.users(key, ids), ids, findings)
            if scan == 0:
                break
        self._scan[key] = scan

    async def _look(
        self,
        key: BoardPeriod,
        expected: dict[str, UserScore],
        user_ids: Sequence[str],
        findings: Findings,
    ) -> None:
        """Compare some users (read from the database just before) with the cache, and put
        back the wrong ones."""
        inspection = await self._cache.inspect(key, user_ids)
        findings.looked += len(user_ids)
        if problem := structure_problem(inspection, bool(expected)):
            raise Rebuild(problem)
        verdict = judge(key, expected, inspection, self._clock(), GRACE)
        removals: list[tuple[str, int]] = []
        if verdict.suspects:  # read again: their first score may have committed meanwhile
            again = await self._committed.users(key, list(verdict.suspects))
            removals = [(u, v) for u, v in verdict.suspects.items() if u not in again]
            findings.problems += [
                f"user {u} is cached but not in the database" for u, _ in removals
            ]
        findings.problems += verdict.problems
        if verdict.repairs or removals:
            findings.repaired += await self._cache.repair(key, verdict.repairs, removals)
        await self._cache.renew_check(key)
        await asyncio.sleep(0)

    async def _rebuild(self, key: BoardPeriod, reason: str) -> None:
        async with self._cache.rebuild_lock(key) as mine:
            if not mine:  # another instance is rebuilding it right now
                return
            log.warning("cache_rebuild", board=key.board, period=key.period, reason=reason)
            users = await self._cache.load(key, self._committed.stream(key, LOAD_BATCH))
            log.info("cache_rebuilt", board=key.board, period=key.period, users=users)

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
