"""The production ranking: Redis in front, the database behind.

Reads come from Redis. While Redis is away (or the cache is known to be stale) they come
from the database instead, so the leaderboard keeps answering. A write that misses Redis
marks the cache stale; the sync loop then rebuilds it from the database as soon as Redis
answers, and also checks the current period of every board against the database every
``interval`` seconds, rebuilding the ones that drifted. A closed period no longer changes: it
is checked once, and again only after the cache was found away. Only one instance rebuilds a
board period at a time (RedisRanking.rebuild_lock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import structlog
from redis.exceptions import RedisError

from scoreboard.leaderboard.ranking import Applied, Neighbourhood, RankedEntry
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.records import BoardPeriod, UserScore

log = structlog.get_logger("scoreboard.cache")
T = TypeVar("T")
STALE_RETRY = 1.0


class CachedRanking:
    def __init__(
        self,
        cache: RedisRanking,
        database: SqlRanking,
        load_committed: Callable[[BoardPeriod], Awaitable[list[UserScore]]],
        readable: Callable[[], Iterable[BoardPeriod]],
        current: Callable[[], Iterable[BoardPeriod]],
        interval: float,
    ) -> None:
        self._cache = cache
        self._database = database
        self._load_committed = load_committed
        self._readable = readable
        self._current = current
        self._settled: set[BoardPeriod] = set()  # closed periods found equal to the database
        self._interval = interval
        self.stale = True  # until the first sync has checked it
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
        self._settled.clear()  # Redis may have lost them: check every period again
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
        if not self.stale:
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

    async def sync(self, *, force: bool = False) -> dict[BoardPeriod, str]:
        """Check every readable board period against the database and rebuild those that
        drifted (or all, with ``force``). Returns what was wrong with each one rebuilt."""
        rebuilt: dict[BoardPeriod, str] = {}
        readable, current = set(self._readable()), set(self._current())
        self._settled &= readable
        try:
            for key in sorted(readable - self._settled, key=lambda k: (k.board, k.period)):
                checked, problem = await self._sync_one(key, force)
                if problem:
                    rebuilt[key] = problem
                if checked and key not in current:
                    self._settled.add(key)
        except RedisError as exc:
            self._mark_stale(exc)
            return rebuilt
        if self.stale:
            log.info("cache_ready", boards=len(rebuilt))
        self.stale = False
        return rebuilt

    async def _sync_one(self, key: BoardPeriod, force: bool) -> tuple[bool, str | None]:
        """Whether the period could be checked (another instance may be rebuilding it), and
        what was wrong with it."""
        async with self._cache.rebuild_lock(key) as mine:
            if not mine:
                return False, None
            committed = await self._load_committed(key)
            problem = "forced" if force else await self._cache.find_drift(key, committed)
            if problem:
                log.warning(
                    "cache_rebuild",
                    board=key.board,
                    period=key.period,
                    reason=problem,
                    users=len(committed),
                )
                await self._cache.replace_all(key, committed)
            return True, problem

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
