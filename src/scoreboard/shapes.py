"""The two shapes, chosen once at start-up: what is shared between instances lives in Redis
when SCOREBOARD_REDIS_URL is set, and in this process otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.boards.service import BoardRegistry
from scoreboard.config import Settings
from scoreboard.leaderboard.cached import CachedRanking
from scoreboard.leaderboard.ranking import MemoryRanking, Ranking
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.live.broadcaster import Broadcaster, LocalBroadcaster
from scoreboard.live.redis_broadcaster import RedisBroadcaster
from scoreboard.live.redis_tickets import RedisWsTicketStore
from scoreboard.live.tickets import MemoryWsTicketStore, WsTicketStore
from scoreboard.scores.repository import ScoreRepository


@dataclass(frozen=True, slots=True)
class SharedBackends:
    ranking: Ranking
    broadcaster: Broadcaster
    tickets: WsTicketStore
    redis: Redis | None
    cache: CachedRanking | None


def redis_client(settings: Settings) -> Redis:
    assert settings.redis_url
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=10,
        # Fail fast: a down Redis must cost a request milliseconds, not the default retries.
        retry=Retry(NoBackoff(), retries=1),
    )


@asynccontextmanager
async def shared_backends(
    settings: Settings, engine: AsyncEngine, repository: ScoreRepository, boards: BoardRegistry
) -> AsyncIterator[SharedBackends]:
    tickets_per_user = settings.ws_max_per_user * 2
    if not settings.redis_url:
        ranking = MemoryRanking()
        for key in boards.readable_keys():  # closed periods past keep_periods stay out
            await ranking.replace_all(key, await repository.load_period(key))
        yield SharedBackends(
            ranking, LocalBroadcaster(), MemoryWsTicketStore(tickets_per_user), None, None
        )
        return
    redis = redis_client(settings)
    prefix = settings.redis_prefix
    cache = CachedRanking(
        RedisRanking(redis, prefix),
        SqlRanking(engine),
        repository.load_period,
        boards.readable_keys,
        boards.current_keys,
        settings.cache_sync_interval,
    )
    broadcaster = RedisBroadcaster(redis, prefix)
    try:
        await cache.start()
        await broadcaster.start()
        yield SharedBackends(
            cache,
            broadcaster,
            RedisWsTicketStore(redis, prefix, max_per_user=tickets_per_user),
            redis,
            cache,
        )
    finally:
        await broadcaster.stop()
        await cache.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):  # never let a stuck socket hold up shutdown
                await redis.aclose()
