"""The production ranking: Redis in front, the database behind.

Reads come from Redis. While Redis is away (or the cache is known to be stale) they come
from the database instead, so the leaderboard keeps answering. A write that misses Redis
marks the cache stale; the sync loop then rebuilds it from the database as soon as Redis
answers, and also checks it against the database every ``interval`` seconds, rebuilding
when it drifted. Only one instance rebuilds at a time (RedisRanking.rebuild_lock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import structlog
from redis.exceptions import RedisError

from scoreboard.leaderboard.ranking import Neighbourhood, RankedEntry
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.scores.models import UserScore

log = structlog.get_logger("scoreboard.cache")
T = TypeVar("T")
STALE_RETRY = 1.0


class CachedRanking:
    def __init__(
        self,
        cache: RedisRanking,
        database: SqlRanking,
        load_committed: Callable[[], Awaitable[list[UserScore]]],
        interval: float,
    ) -> None:
        self._cache = cache
        self._database = database
        self._load_committed = load_committed
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
        self._wake.set()

    async def revision(self) -> int:
        return await self._read(self._cache.revision, self._database.revision)

    async def top(self, limit: int) -> list[RankedEntry]:
        return await self._read(lambda: self._cache.top(limit), lambda: self._database.top(limit))

    async def rank_of(self, user_id: str) -> RankedEntry | None:
        return await self._read(
            lambda: self._cache.rank_of(user_id), lambda: self._database.rank_of(user_id)
        )

    async def around(self, user_id: str, span: int) -> Neighbourhood | None:
        return await self._read(
            lambda: self._cache.around(user_id, span),
            lambda: self._database.around(user_id, span),
        )

    async def apply(self, users: Sequence[UserScore]) -> None:
        try:
            await self._cache.apply(users)
        except RedisError as exc:  # the database has it; the next sync puts it in the cache
            self._mark_stale(exc)

    async def replace_all(self, users: Iterable[UserScore]) -> None:
        await self._cache.replace_all(users)

    async def sync(self, *, force: bool = False) -> str | None:
        """Check the cache against the database and rebuild it if needed. Returns what was
        wrong (None: nothing, or another instance is rebuilding)."""
        try:
            async with self._cache.rebuild_lock() as mine:
                if not mine:
                    return None
                committed = await self._load_committed()
                problem = "forced" if force else await self._cache.find_drift(committed)
                if problem:
                    log.warning("cache_rebuild", reason=problem, users=len(committed))
                    await self._cache.replace_all(committed)
                if self.stale:
                    log.info("cache_ready", users=len(committed))
                self.stale = False
                return problem
        except RedisError as exc:
            self._mark_stale(exc)
            return None

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
