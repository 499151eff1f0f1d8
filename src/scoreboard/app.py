"""The application factory. Resources are made in the lifespan and closed there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from scoreboard import __version__
from scoreboard.abuse.repository import AbuseRepository
from scoreboard.abuse.rules import configured_rules
from scoreboard.abuse.service import AbuseService
from scoreboard.abuse.webhook import FlagWebhook
from scoreboard.access import wrap
from scoreboard.actions.catalog import load_catalog
from scoreboard.actions.endpoints import issue_action
from scoreboard.actions.service import ActionService
from scoreboard.actions.tickets import TicketSigner
from scoreboard.admin.endpoints import AdminController
from scoreboard.admin.service import AdminService
from scoreboard.auth.guards import BearerAuthMiddleware
from scoreboard.auth.tokens import TokenVerifier
from scoreboard.boards.endpoints import list_boards
from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.service import BoardRegistry
from scoreboard.clock import Clock, system_clock
from scoreboard.config import Settings
from scoreboard.database import create_engine, prepare_schema
from scoreboard.errors import exception_handlers
from scoreboard.hardening import RefuseNul, refused_preflight_as_problem, security_headers
from scoreboard.health import healthz, readyz
from scoreboard.keys import load_keys
from scoreboard.leaderboard.archive import PeriodPruner
from scoreboard.leaderboard.endpoints import (
    read_board,
    read_leaderboard,
    read_my_board_standing,
    read_my_standing,
)
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.broadcaster import Event
from scoreboard.live.endpoints import asyncapi_document, issue_ws_ticket, live_leaderboard
from scoreboard.live.hub import Hub
from scoreboard.metrics import Metrics, multiprocess_dir
from scoreboard.monitoring import AvailabilityProbe, MetricsPort, metrics_route
from scoreboard.openapi_examples import add_examples
from scoreboard.ratelimit import PerAddressLimit, RateLimiter, Rates
from scoreboard.records import BoardsChanged
from scoreboard.requests import ScoreboardRequest
from scoreboard.scores.endpoints import update_score, update_scores_batch
from scoreboard.scores.repository import ScoreRepository
from scoreboard.scores.service import ScoreService
from scoreboard.shapes import close_redis, redis_client, shared_backends, shared_pool
from scoreboard.web.docs import DocsPage
from scoreboard.web.endpoints import web_handlers

log = structlog.get_logger("scoreboard")
SHUTDOWN_STEP = 10.0


def _from_state(name: str) -> Provide:
    def provide(state: State) -> Any:
        return state[name]

    return Provide(provide, sync_to_thread=False)


async def _bounded(
    stop: Callable[[], Awaitable[None]], name: str, seconds: float = SHUTDOWN_STEP
) -> None:
    """Shutdown must end: a step that hangs (a stuck socket, say) is logged and left."""
    try:
        async with asyncio.timeout(seconds):
            await stop()
    except TimeoutError:
        log.error("shutdown_step_timed_out", step=name, seconds=seconds)


def _openapi(settings: Settings) -> OpenAPIConfig:
    """The schema at /schema/openapi.json (and .yaml); the docs page only where it is
    wanted, and never one that loads scripts from a CDN (``scoreboard.web.docs``)."""
    docs = settings.docs_pages if settings.docs_pages is not None else settings.env == "dev"
    return OpenAPIConfig(
        title="Scoreboard",
        version=__version__,
        description="Secure score updates and a live leaderboard.",
        path="/schema",
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
        security=[{"BearerToken": []}],
        render_plugins=[
            JsonRenderPlugin(),
            YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
            *([DocsPage()] if docs else []),
        ],
    )


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> Litestar:
    """The application. ``clock`` is "now" for every part of it (tests move it)."""
    settings = settings or Settings()
    keys = load_keys(settings)
    catalog = load_catalog(settings.actions_file)
    rules = configured_rules(settings.abuse_rules)
    signer = TicketSigner(keys)
    metrics = Metrics("production" if settings.redis_url else "embedded", enabled=settings.metrics)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine = create_engine(settings.resolved_database_url)
            stack.push_async_callback(_bounded, engine.dispose, "engine")
            await prepare_schema(engine, auto_migrate=settings.should_auto_migrate)
            read_engine = None  # reads that may lag: the leaderboard fallback, admin history
            if settings.database_read_url:
                read_engine = create_engine(settings.database_read_url)
                stack.push_async_callback(_bounded, read_engine.dispose, "read engine")
            # Under `serve --workers N` the supervisor serves the port for all the workers.
            if settings.metrics and settings.metrics_port is not None and not multiprocess_dir():
                port = MetricsPort(metrics, settings.host, settings.metrics_port)
                port.start()
                stack.push_async_callback(_bounded, port.stop, "metrics port")

            board_repository = BoardRepository(engine)
            boards = BoardRegistry(catalog.boards, catalog.feeds, board_repository, clock)
            await boards.start()
            stack.push_async_callback(_bounded, boards.stop, "boards")

            redis = redis_client(settings) if settings.redis_url else None
            if redis is not None:
                stack.push_async_callback(close_redis, redis)
            limiter = RateLimiter(
                settings.resolved_rate_limit_storage,
                key_prefix=f"{settings.redis_prefix}limits",
                # Redis limits share the service's bounded pool, unless stored elsewhere.
                pool=shared_pool(redis) if not settings.rate_limit_storage else None,
                metrics=metrics,
                redis=redis if not settings.rate_limit_storage else None,
            )
            abuse_repository = AbuseRepository(engine, read_engine)
            webhook = None
            if settings.alert_webhook_url:
                secret = settings.alert_webhook_secret
                webhook = FlagWebhook(
                    settings.alert_webhook_url,
                    metrics,
                    secret=secret.get_secret_value() if secret else None,
                )
                await webhook.start()
                stack.push_async_callback(_bounded, webhook.stop, "alert webhook")
            abuse = AbuseService(
                rules, limiter, abuse_repository, metrics, webhook.offer if webhook else None
            )
            await abuse.start()
            stack.push_async_callback(_bounded, abuse.stop, "abuse")

            repository = ScoreRepository(engine, boards, metrics=metrics)
            shared = await stack.enter_async_context(
                shared_backends(settings, engine, repository, boards, redis, metrics, read_engine)
            )
            ranking, broadcaster, ws_tickets = shared.ranking, shared.broadcaster, shared.tickets
            leaderboard = LeaderboardService(ranking, boards)
            hub = Hub(
                leaderboard,
                top_n=settings.live_top_n,
                interval=settings.broadcast_interval,
                max_per_user=settings.ws_max_per_user,
                max_per_ip=settings.ws_max_per_ip,
                metrics=metrics,
            )

            async def on_event(event: Event) -> None:
                if isinstance(event, BoardsChanged):
                    await boards.refresh()  # before the hub looks at the periods
                await hub.on_event(event)

            broadcaster.subscribe(on_event)
            await hub.start()
            stack.push_async_callback(_bounded, hub.stop, "hub")
            pruner = PeriodPruner(boards, board_repository, ranking, settings.prune_interval)
            await pruner.start()
            stack.push_async_callback(_bounded, pruner.stop, "pruner")
            await repository.start()
            # stops first: drains the writes
            stack.push_async_callback(_bounded, repository.stop, "score writer", 30)

            scores = ScoreService(
                signer,
                repository,
                ranking,
                broadcaster,
                abuse,
                boards,
                settings.clock_skew,
                metrics,
                limiter=limiter,
                update_rate=app.state.rates.updates_per_user,
            )
            metrics.show(
                boards=[entry.id for entry in boards.entries()],
                limits=[rate.name for rate in Rates.from_settings(settings).all()],
            )
            probe = AvailabilityProbe(metrics, engine, shared.redis, boards)
            await probe.start()
            stack.push_async_callback(_bounded, probe.stop, "availability probe")
            app.state.update(
                engine=engine,
                rate_limiter=limiter,
                abuse=abuse,
                scores=scores,
                ranking=ranking,
                broadcaster=broadcaster,
                action_service=ActionService(catalog, signer, boards),
                admin=AdminService(scores, abuse, abuse_repository, boards, broadcaster),
                boards=boards,
                pruner=pruner,
                leaderboard=leaderboard,
                hub=hub,
                repository=repository,
                ws_tickets=ws_tickets,
                redis=shared.redis,
            )
            log.info("ready", database=engine.dialect.name, redis=shared.redis is not None)
            yield

    cors = (
        CORSConfig(
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Retry-After", "RateLimit", "RateLimit-Policy", "X-Request-ID"],
            max_age=600,
        )
        if settings.allowed_origins
        else None
    )
    app = Litestar(
        route_handlers=[
            issue_action,
            update_score,
            update_scores_batch,
            read_leaderboard,
            read_my_standing,
            read_board,
            read_my_board_standing,
            list_boards,
            healthz,
            readyz,
            issue_ws_ticket,
            live_leaderboard,
            AdminController,
            *web_handlers(settings, keys),
            *([asyncapi_document] if settings.openapi else []),
            *([metrics_route] if settings.metrics and settings.metrics_port is None else []),
        ],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "key_material": keys,
                "token_verifier": TokenVerifier(settings, keys),
                "rates": Rates.from_settings(settings),
                "metrics": metrics,
            }
        ),
        # Dependency names must not be field names of a request body: Litestar takes a
        # validation error on such a field for a broken dependency and answers 500.
        dependencies={
            name: _from_state(name)
            for name in (
                "action_service",
                "scores",
                "leaderboard",
                "engine",
                "hub",
                "repository",
                "ws_tickets",
                "admin",
                "boards",
            )
        },
        middleware=[
            RefuseNul(),
            PerAddressLimit(),
            DefineMiddleware(BearerAuthMiddleware, exclude=["^/schema", "^/static"]),
        ],
        cors_config=cors,
        before_send=[
            security_headers(hsts=settings.env == "production"),
            refused_preflight_as_problem,
        ],
        exception_handlers=exception_handlers,
        openapi_config=_openapi(settings) if settings.openapi else None,
        request_max_body_size=settings.max_body_size,
        request_class=ScoreboardRequest,
        debug=False,
        logging_config=None,  # scoreboard.logging configures it (one stream, JSON in production)
    )
    # Access log, X-Request-ID and latency for every request, 404s and refusals included.
    wrap(app, metrics.http_duration, access_log=settings.access_log)
    if settings.openapi:
        add_examples(app.openapi_schema)
    return app
