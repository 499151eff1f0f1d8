"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.auth.guards import ApiRequest
from scoreboard.database import ping
from scoreboard.redis_urls import REDIS_DOWN, RedisClient
from scoreboard.scores.repository import ScoreRepository

READY_TTL = 1.0  # seconds a readiness answer is reused


class Alive(msgspec.Struct):
    status: str


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    database: str
    writer: str
    redis: str | None = None  # only in the production shape


@get(
    "/healthz",
    summary="The process is alive",
    tags=["health"],
    security=[{}],
    exclude_from_auth=True,
    operation_id="getHealth",
)
async def healthz() -> Alive:
    return Alive(status="ok")


@get(
    "/readyz",
    summary="Ready for traffic: the database answers and the score writer runs",
    tags=["health"],
    security=[{}],
    exclude_from_auth=True,
    responses={503: ResponseSpec(data_container=Health, description="Not ready, and why")},
    operation_id="getReadiness",
)
async def readyz(
    request: ApiRequest,
    engine: NamedDependency[AsyncEngine],
    repository: NamedDependency[ScoreRepository],
) -> Response[Health]:
    """503 when scores cannot be written (database or writer down). Redis down is reported
    but still ready: reads fall back to the database and updates keep working. The answer
    is reused for a second and concurrent probes share one check, so a flood of probes
    costs the database (and the update path's connection pool) one ping a second."""
    cache: Readiness = request.app.state.setdefault("readiness", Readiness())
    redis: RedisClient | None = request.app.state.get("redis")

    async def check() -> Health:
        health = Health(
            status="ok",
            database="ok" if await ping(engine) else "unavailable",
            writer="ok" if repository.is_running else "stopped",
            redis=None if redis is None else ("ok" if await redis_ok(redis) else "unavailable"),
        )
        if health.database != "ok" or health.writer != "ok" or health.redis == "unavailable":
            health.status = "degraded"
        return health

    health = await cache.get(check)
    ready = health.database == "ok" and health.writer == "ok"
    return Response(health, status_code=200 if ready else 503)


class Readiness:
    """The last readiness answer, fresh for ``ttl`` seconds, and at most one check at a time."""

    def __init__(self, ttl: float = READY_TTL) -> None:
        self._ttl = ttl
        self._answer: Health | None = None
        self._at = 0.0
        self._running: asyncio.Future[Health] | None = None

    async def get(self, check: Callable[[], Awaitable[Health]]) -> Health:
        if self._answer is not None and time.monotonic() - self._at < self._ttl:
            return self._answer
        if self._running is None:
            self._running = asyncio.ensure_future(check())
            self._running.add_done_callback(self._store)
        return await asyncio.shield(self._running)

    def _store(self, done: asyncio.Future[Health]) -> None:
        self._running = None
        if not done.cancelled() and done.exception() is None:
            self._answer, self._at = done.result(), time.monotonic()


async def redis_ok(redis: RedisClient) -> bool:
    try:
        return bool(await redis.ping())
    except REDIS_DOWN:
        return False
