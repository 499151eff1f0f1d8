"""Running the app under uvicorn, with a shutdown that tells live clients to reconnect."""

from __future__ import annotations

import gc
import resource
import socket

import uvicorn
from litestar import Litestar

from scoreboard.config import Settings
from scoreboard.live.protocol import MAX_CLIENT_MESSAGE, CloseCode
from scoreboard.logging import redact_server_logs
from scoreboard.protocols import (
    BoundedHttpProtocol,
    BoundedWebSocketProtocol,
    Limits,
    bounded,
)

FILE_RESERVE = 128  # descriptors kept for the database and Redis pools, logs and files


class _Server(uvicorn.Server):
    """uvicorn closes WebSockets with 1012 before the app's own shutdown runs; close ours
    first with 1001 ("going away"), which every client treats as "reconnect"."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything made at start-up lives as long as the process: keep it out of the
        # collector's way, and collect the young generation less often (pauses at fan-out).
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 20, 10)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        hub = app.state.get("hub") if isinstance(app, Litestar) else None
        if hub is not None:
            await hub.close_all(CloseCode.GOING_AWAY, "server shutting down; reconnect")
        await super().shutdown(sockets)


def connection_cap(settings: Settings) -> int:
    """SCOREBOARD_MAX_CONNECTIONS, or what the open-file limit leaves after a reserve for the
    database, Redis and the files the process opens itself."""
    if settings.max_connections is not None:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft - FILE_RESERVE)


def uvicorn_config(app: Litestar, settings: Settings) -> uvicorn.Config:
    limits = Limits(
        max_head=settings.max_header_size,
        head_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=connection_cap(settings),
        max_write_buffer=settings.ws_max_write_buffer,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=bounded(BoundedHttpProtocol, limits),
        ws=bounded(BoundedWebSocketProtocol, limits),
        ws_max_size=MAX_CLIENT_MESSAGE,
        # Boards are small; compressing each one per connection cost ~25% of the fan-out
        # CPU and ~40 KB of memory per socket in bench/live_fanout.py.
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        # X-Forwarded-For counts only from the proxies named here; otherwise a client could
        # pick its own address for limits and the audit trail.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        lifespan="on",
        server_header=False,
        # The access log is the app's own (scoreboard.access: route template, request id,
        # user, no query); uvicorn's would print the raw path with its query.
        access_log=False,
        # uvicorn's loggers keep no handlers of their own: their records reach the root
        # handler of scoreboard.logging, rendered like every other line (JSON in production).
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    redact_server_logs()  # after uvicorn configured its loggers
    return config


def make_server(app: Litestar, settings: Settings) -> uvicorn.Server:
    return _Server(uvicorn_config(app, settings))
