"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.auth.guards import ApiRequest
from scoreboard.database import ping
from scoreboard.scores.repository import ScoreRepository


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
    but still ready: reads fall back to the database and updates keep working."""
    redis: Redis | None = request.app.state.get("redis")
    health = Health(
        status="ok",
        database="ok" if await ping(engine) else "unavailable",
        writer="ok" if repository.is_running else "stopped",
        redis=None if redis is None else ("ok" if await _redis_ok(redis) else "unavailable"),
    )
    if health.database != "ok" or health.writer != "ok":
        health.status = "degraded"
        return Response(health, status_code=503)
    if health.redis == "unavailable":
        health.status = "degraded"
    return Response(health)


async def _redis_ok(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except RedisError:
        return False
