"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.database import ping
from scoreboard.scores.repository import ScoreRepository


class Health(msgspec.Struct):
    status: str
    database: str = "ok"
    writer: str = "ok"


@get(
    "/healthz",
    summary="The process is alive",
    tags=["health"],
    security=[{}],
    exclude_from_auth=True,
)
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Ready for traffic: the database answers and the score writer runs",
    tags=["health"],
    security=[{}],
    exclude_from_auth=True,
    responses={503: ResponseSpec(data_container=Health, description="Not ready, and why")},
)
async def readyz(
    engine: NamedDependency[AsyncEngine], repository: NamedDependency[ScoreRepository]
) -> Response[Health]:
    health = Health(
        status="ok",
        database="ok" if await ping(engine) else "unavailable",
        writer="ok" if repository.is_running else "stopped",
    )
    if health.database != "ok" or health.writer != "ok":
        health.status = "degraded"
        return Response(health, status_code=503)
    return Response(health)
