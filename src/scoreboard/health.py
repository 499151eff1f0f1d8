"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.scores.repository import UNAVAILABLE


class Health(msgspec.Struct):
    status: str
    database: str = "ok"


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
    summary="Dependencies are reachable",
    tags=["health"],
    security=[{}],
    exclude_from_auth=True,
    responses={503: ResponseSpec(data_container=Health, description="A dependency is down")},
)
async def readyz(engine: NamedDependency[AsyncEngine]) -> Response[Health]:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except UNAVAILABLE:
        return Response(Health(status="degraded", database="unavailable"), status_code=503)
    return Response(Health(status="ok"))
