"""The application factory. Resources are made in the lifespan and closed there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from scoreboard import __version__
from scoreboard.actions.catalog import load_catalog
from scoreboard.actions.endpoints import issue_action
from scoreboard.actions.service import ActionService
from scoreboard.actions.tickets import TicketSigner
from scoreboard.auth.guards import BearerAuthMiddleware
from scoreboard.auth.tokens import TokenVerifier
from scoreboard.config import Settings
from scoreboard.database import create_engine, prepare_schema
from scoreboard.errors import exception_handlers
from scoreboard.health import healthz, readyz
from scoreboard.keys import load_keys
from scoreboard.leaderboard.endpoints import read_leaderboard, read_my_standing
from scoreboard.leaderboard.ranking import MemoryRanking
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.broadcaster import LocalBroadcaster
from scoreboard.live.endpoints import issue_ws_ticket, live_leaderboard
from scoreboard.live.hub import Hub
from scoreboard.live.tickets import MemoryWsTicketStore
from scoreboard.requests import ScoreboardRequest
from scoreboard.scores.endpoints import update_score
from scoreboard.scores.repository import ScoreRepository
from scoreboard.scores.service import ScoreService
from scoreboard.web.endpoints import web_handlers

log = structlog.get_logger("scoreboard")


def _from_state(name: str) -> Provide:
    def provide(state: State) -> Any:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    keys = load_keys(settings)
    catalog = load_catalog(settings.actions_file)
    signer = TicketSigner(keys)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.resolved_database_url)
        try:
            await prepare_schema(engine, auto_migrate=settings.should_auto_migrate)
            repository = ScoreRepository(engine)
            ranking = MemoryRanking()
            users = await repository.load_all()
            await ranking.replace_all(users)
            leaderboard = LeaderboardService(ranking)
            broadcaster = LocalBroadcaster()
            hub = Hub(
                leaderboard,
                top_n=settings.live_top_n,
                interval=settings.broadcast_interval,
                max_per_user=settings.ws_max_per_user,
                max_per_ip=settings.ws_max_per_ip,
            )
            broadcaster.subscribe(hub.on_score)
            await hub.start()
            await repository.start()
            app.state.update(
                engine=engine,
                scores=ScoreService(signer, repository, ranking, broadcaster, settings.clock_skew),
                leaderboard=leaderboard,
                hub=hub,
                repository=repository,
                ws_tickets=MemoryWsTicketStore(),
            )
            log.info("ready", users=len(users), database=engine.dialect.name)
            try:
                yield
            finally:
                await hub.stop()
                await repository.stop()
        finally:
            await engine.dispose()

    openapi = OpenAPIConfig(
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
    )
    return Litestar(
        route_handlers=[
            issue_action,
            update_score,
            read_leaderboard,
            read_my_standing,
            healthz,
            readyz,
            issue_ws_ticket,
            live_leaderboard,
            *web_handlers(settings, keys),
        ],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "key_material": keys,
                "token_verifier": TokenVerifier(settings, keys),
                "actions": ActionService(catalog, signer),
            }
        ),
        dependencies={
            "actions": _from_state("actions"),
            "scores": _from_state("scores"),
            "leaderboard": _from_state("leaderboard"),
            "engine": _from_state("engine"),
            "hub": _from_state("hub"),
            "repository": _from_state("repository"),
            "ws_tickets": _from_state("ws_tickets"),
        },
        middleware=[DefineMiddleware(BearerAuthMiddleware, exclude=["^/schema", "^/static"])],
        exception_handlers=exception_handlers,
        openapi_config=openapi,
        request_max_body_size=settings.max_body_size,
        request_class=ScoreboardRequest,
        debug=False,
    )
