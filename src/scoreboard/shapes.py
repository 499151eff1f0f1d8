"""The two shapes, chosen once at start-up: what is shared between instances lives in Redis
when SCOREBOARD_REDIS_URL is set, and in this process otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.boards.service import BoardRegistry
from scoreboard.config import Settings
from scoreboard.leaderboard.cached import CachedRanking
from scoreboard.leaderboard.committed import CommittedScores
from scoreboard.leaderboard.ranking import MemoryRanking, Ranking
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.live.broadcaster import Broadcaster, LocalBroadcaster
from scoreboard.live.redis_broadcaster import RedisBroadcaster
from scoreboard.live.redis_tickets import RedisWsTicketStore
from scoreboard.live.tickets import MemoryWsTicketStore, WsTicketStore
from scoreboard.metrics import Metrics
from scoreboard.redis_urls import ClusterClient, RedisClient, parse_redis_url
from scoreboard.redis_wire import Wire, WiredRedis
from scoreboard.scores.repository import ScoreRepository

log = structlog.get_logger("scoreboard.redis")


@dataclass(frozen=True, slots=True)
class SharedBackends:
    ranking: Ranking
    broadcaster: Broadcaster
    tickets: WsTicketStore
    redis: RedisClient | None
    cache: CachedRanking | None


POOL_WAIT = 2.0  # seconds a caller waits for a free Redis connection before it fails
POOL_IDLE = 60.0  # seconds an unused connection stays open beyond POOL_KEEP
POOL_KEEP = 4


class TrimmedPool(BlockingConnectionPool):
    """At most ``max_connections`` connections (a caller waits up to ``timeout`` for one),
    and ``trim()`` closes the ones unused for ``idle`` seconds, down to ``keep``: a burst
    of load must not leave its connections open for good."""

    def __init__(self, *, idle: float = POOL_IDLE, keep: int = POOL_KEEP, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idle = idle
        self._keep = keep
        self._released: weakref.WeakKeyDictionary[AbstractConnection, float] = (
            weakref.WeakKeyDictionary()
        )

    async def release(self, connection: AbstractConnection) -> None:
        self._released[connection] = time.monotonic()
        await super().release(connection)

    @property
    def open_connections(self) -> int:
        return len(self._available_connections) + len(self._in_use_connections)

    async def trim(self) -> int:
        """Close the connections idle for too long; returns how many."""
        now, closing = time.monotonic(), []
        async with self._condition:  # what get_connection and release hold
            idle = self._available_connections  # the longest unused first (taken LIFO)
            while len(idle) > self._keep and now - self._released.get(idle[0], now) >= self._idle:
                closing.append(idle.pop(0))
        results = await asyncio.gather(
            *(connection.disconnect() for connection in closing), return_exceptions=True
        )
        for failed in (r for r in results if isinstance(r, BaseException)):
            log.warning("redis_pool_disconnect_failed", error=type(failed).__name__)
        return len(closing)


CLIENT_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}


def redis_client(settings: Settings) -> RedisClient:
    """A client for the configured topology: one server, a cluster or a Sentinel-watched
    master. Every wait is bounded and a failed command is retried at most once, at once: a
    down Redis must cost a request milliseconds."""
    assert settings.redis_url
    target = parse_redis_url(settings.redis_url)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    tls: dict[str, Any] = {"ssl": True} if target.tls else {}
    if target.topology == "cluster":
        return ClusterClient(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=settings.redis_max_connections,  # per node
            # A failover: re-read the slot map and retry a command a few times, briefly.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            **tls,
            **auth,
            **CLIENT_TIMEOUTS,
        )
    if target.topology == "sentinel":
        assert target.master is not None
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes),
            sentinel_kwargs={**auth, **CLIENT_TIMEOUTS},
            max_connections=settings.redis_max_connections,
            retry=Retry(NoBackoff(), retries=1),
            **tls,
            **auth,
            **CLIENT_TIMEOUTS,
        )
        master: Redis = sentinel.master_for(target.master)
        return master
    pool = TrimmedPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=POOL_WAIT,
        health_check_interval=10,
        retry=Retry(NoBackoff(), retries=1),
        **CLIENT_TIMEOUTS,
    )
    client = WiredRedis(connection_pool=pool)
    client.auto_close_connection_pool = True  # as Redis.from_pool: the pool is the client's
    client.wire = Wire.for_client(client)  # the hot path's scripts and events
    return client


def shared_pool(redis: RedisClient | None) -> TrimmedPool | None:
    """The one-server pool other Redis users (the rate limiter) may share, if there is one."""
    if isinstance(redis, Redis) and isinstance(redis.connection_pool, TrimmedPool):
        return redis.connection_pool
    return None


async def _trim_forever(pool: TrimmedPool) -> None:
    while True:
        await asyncio.sleep(POOL_IDLE / 2)
        try:
            await pool.trim()
        except Exception as exc:  # a connection that fails to close must not stop the trimming
            log.warning("redis_pool_trim_failed", error=type(exc).__name__)


@asynccontextmanager
async def shared_backends(
    settings: Settings,
    engine: AsyncEngine,
    repository: ScoreRepository,
    boards: BoardRegistry,
    redis: RedisClient | None,
    metrics: Metrics | None = None,
    read_engine: AsyncEngine | None = None,
) -> AsyncIterator[SharedBackends]:
    """What the instances share. ``redis`` (from ``redis_client``) stays the caller's to
    close. ``read_engine``: a replica for the database fallback's reads."""
    tickets_per_user = settings.ws_max_per_user * 2
    if redis is None:
        ranking = MemoryRanking()
        for key in boards.readable_keys():  # closed periods past keep_periods stay out
            await ranking.replace_all(key, await repository.load_period(key))
        yield SharedBackends(
            ranking, LocalBroadcaster(), MemoryWsTicketStore(tickets_per_user), None, None
        )
        return
    prefix = settings.redis_prefix
    cache = CachedRanking(
        RedisRanking(redis, prefix),
        SqlRanking(engine, read_engine),
        CommittedScores(engine),  # checks the cache against what is committed: the primary
        boards.readable_keys,
        boards.current_keys,
        settings.cache_sync_interval,
        clock=boards.clock,
        audit_users=settings.cache_audit_users,
        grace=timedelta(seconds=settings.cache_grace),
        metrics=metrics,
    )
    broadcaster = RedisBroadcaster(redis, prefix, lambda: [e.id for e in boards.entries()])
    pool = shared_pool(redis)
    trimming = asyncio.create_task(_trim_forever(pool)) if pool is not None else None
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
        if trimming is not None:
            trimming.cancel()
        await broadcaster.stop()
        await cache.stop()


async def close_redis(redis: RedisClient) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):  # never let a stuck socket hold up shutdown
            await redis.aclose()
