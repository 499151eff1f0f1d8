"""What operators look at: the ``/metrics`` route (or its own port), and a probe that keeps
the database and Redis availability gauges current."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import structlog
from litestar import Request, Response, get
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.boards.service import BoardRegistry
from scoreboard.database import ping
from scoreboard.health import redis_ok
from scoreboard.metrics import CONTENT_TYPE, Metrics
from scoreboard.redis_urls import RedisClient

log = structlog.get_logger("scoreboard.monitoring")
PROBE_INTERVAL = 5.0  # seconds between availability probes
PROBE_TIMEOUT = 2.0


@get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "The Prometheus text format. Outside rate limits and needs no token; serve it on its "
        "own port instead (SCOREBOARD_METRICS_PORT) to keep it off the public listener."
    ),
    tags=["health"],
    security=[{}],
    exclude_from_auth=True,
    include_in_schema=True,
    operation_id="getMetrics",
    media_type=CONTENT_TYPE,
)
async def metrics_route(request: Request[Any, Any, Any]) -> Response[bytes]:
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.scrape(), media_type=CONTENT_TYPE)


class MetricsPort:
    """``SCOREBOARD_METRICS_PORT``: the scrape served by prometheus_client's own small HTTP
    server on a thread, so it need not be reachable from the internet."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics, self._host, self._port = metrics, host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._metrics.registry
        )
        log.info("metrics_listening", host=self._host, port=self._port)

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server.server_close()


class AvailabilityProbe:
    """Every few seconds: sets ``scoreboard_database_up`` and ``scoreboard_redis_up``, and
    counts each board whose current period changed since the last look (a natural period
    ending by the clock, or a rollover an admin forced on any instance)."""

    def __init__(
        self,
        metrics: Metrics,
        engine: AsyncEngine,
        redis: RedisClient | None,
        boards: BoardRegistry,
        interval: float = PROBE_INTERVAL,
    ) -> None:
        self._metrics, self._engine, self._redis, self._interval = metrics, engine, redis, interval
        self._boards = boards
        self._periods: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._loop(), name="availability-probe")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def probe(self) -> None:
        async def bounded(check: Any) -> bool:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    return bool(await check)
            except Exception:
                return False

        self._metrics.database_up.set(await bounded(ping(self._engine)))
        if self._redis is not None and self._metrics.redis_up is not None:
            self._metrics.redis_up.set(await bounded(redis_ok(self._redis)))
        self._count_rollovers()

    def _count_rollovers(self) -> None:
        periods = {
            entry.id: self._boards.current(entry).key
            for entry in self._boards.entries()
            if entry.active
        }
        for board, period in periods.items():
            seen = self._periods.get(board)
            if seen is not None and seen != period:
                self._metrics.rollovers.labels(board).inc()
        self._periods = periods

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.probe()
