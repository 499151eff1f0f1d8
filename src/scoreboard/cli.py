"""The `scoreboard` command: serve, demo, migrate, rebuild-cache, prune, token."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from functools import partial
from secrets import token_urlsafe
from typing import Annotated

import structlog
import typer
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.actions.catalog import load_catalog
from scoreboard.auth.principal import DEFAULT_USER_SCOPES
from scoreboard.auth.tokens import mint_token
from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.service import BoardRegistry
from scoreboard.clock import system_clock
from scoreboard.config import InsecureSettingsError, Settings
from scoreboard.database import SchemaNotCurrentError, create_engine, migrate, prepare_schema
from scoreboard.keys import load_keys
from scoreboard.leaderboard.archive import PeriodPruner, Pruned
from scoreboard.leaderboard.committed import CommittedScores
from scoreboard.leaderboard.ranking import Ranking
from scoreboard.leaderboard.redis_ranking import LOAD_BATCH, RedisRanking
from scoreboard.leaderboard.sql_ranking import SqlRanking
from scoreboard.logging import configure_logging
from scoreboard.records import BoardPeriod
from scoreboard.server import make_server
from scoreboard.shapes import redis_client

log = structlog.get_logger("scoreboard")
cli = typer.Typer(
    help="Scoreboard: secure score updates and a live leaderboard.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
        settings.check_production_safety()
    except ValidationError as exc:
        # Never echo the offending values: they may be secrets.
        problems = "; ".join(
            f"SCOREBOARD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        typer.secho(f"configuration error: {problems}", err=True, fg="red")
        raise typer.Exit(2) from exc
    except InsecureSettingsError as exc:
        typer.secho(f"configuration error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    return settings


async def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    engine = create_engine(settings.resolved_database_url)
    try:
        await work(engine)
    finally:
        await engine.dispose()


async def _boards(settings: Settings, engine: AsyncEngine) -> BoardRegistry:
    """The boards in force (the catalog file's and the database's), checked for conflicts."""
    catalog = load_catalog(settings.actions_file)
    boards = BoardRegistry(catalog.boards, catalog.feeds, BoardRepository(engine), system_clock)
    await boards.start(refresh=False)
    return boards


async def _ready(engine: AsyncEngine, settings: Settings) -> None:
    await prepare_schema(engine, auto_migrate=settings.should_auto_migrate)
    await _boards(settings, engine)


def _prepare(settings: Settings) -> Callable[[AsyncEngine], Awaitable[None]]:
    return partial(_ready, settings=settings)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env SCOREBOARD_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env SCOREBOARD_PORT]")] = None,
) -> None:
    """Run the service (migrates the embedded SQLite database by itself)."""
    from scoreboard.app import create_app

    settings = _settings(host=host, port=port)
    configure_logging(settings)
    try:
        app = create_app(settings)
        asyncio.run(_with_engine(settings, _prepare(settings)))
    except (ValueError, OSError, SchemaNotCurrentError, SQLAlchemyError) as exc:
        if settings.resolved_log_format == "json":  # one JSON stream, even for this
            log.error("cannot_start", error=str(exc))
        else:
            typer.secho(f"cannot start: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    log.info("listening", url=f"http://{settings.host}:{settings.port}")
    make_server(app, settings).run()


@cli.command()
def demo(
    players: Annotated[int, typer.Option(min=1, max=500, help="Simulated players")] = 20,
    rate: Annotated[float, typer.Option(min=0.1, max=500, help="Completions per second")] = 4.0,
    host: Annotated[str | None, typer.Option(help="Bind address [env SCOREBOARD_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env SCOREBOARD_PORT]")] = None,
) -> None:
    """Run the service with simulated players; prints the URL of the live page."""
    from scoreboard.demo import run_demo

    settings = _settings(host=host, port=port)
    if settings.env != "dev":
        typer.secho("the demo runs only with SCOREBOARD_ENV=dev", err=True, fg="red")
        raise typer.Exit(2)
    configure_logging(settings)
    try:
        asyncio.run(_with_engine(settings, _prepare(settings)))
        asyncio.run(run_demo(settings, players, rate))
    except (ValueError, OSError, SchemaNotCurrentError, SQLAlchemyError) as exc:
        typer.secho(f"cannot start: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        pass


@cli.command("rebuild-cache")
def rebuild_cache() -> None:
    """Rebuild the Redis ranking cache of every readable board period from the database."""
    settings = _settings()
    if not settings.redis_url:
        typer.secho("SCOREBOARD_REDIS_URL is not set: there is no cache", err=True, fg="red")
        raise typer.Exit(2)
    try:
        rebuilt, busy = asyncio.run(_rebuild(settings))
    except (OSError, ValueError, SQLAlchemyError, RedisError) as exc:
        typer.secho(f"cannot rebuild: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    for key, users in rebuilt.items():
        typer.echo(f"cache rebuilt: {key.board}/{key.period}: {users} users", err=True)
    if busy:
        names = ", ".join(f"{key.board}/{key.period}" for key in busy)
        typer.secho(f"another instance is rebuilding {names} right now", err=True, fg="yellow")
        raise typer.Exit(1)


async def _rebuild(settings: Settings) -> tuple[dict[BoardPeriod, int], list[BoardPeriod]]:
    engine = create_engine(settings.resolved_database_url)
    redis = redis_client(settings)
    rebuilt: dict[BoardPeriod, int] = {}
    busy: list[BoardPeriod] = []
    try:
        boards = await _boards(settings, engine)
        cache = RedisRanking(redis, settings.redis_prefix)
        committed = CommittedScores(engine)
        for key in sorted(boards.readable_keys(), key=lambda k: (k.board, k.period)):
            async with cache.rebuild_lock(key) as mine:
                if not mine:
                    busy.append(key)
                    continue
                rebuilt[key] = await cache.load(key, committed.stream(key, LOAD_BATCH))
        return rebuilt, busy
    finally:
        await redis.aclose()
        await engine.dispose()


@cli.command()
def prune() -> None:
    """Delete the scores of closed periods past their board's keep_periods (the running
    service also does it every SCOREBOARD_PRUNE_INTERVAL seconds)."""
    settings = _settings()
    try:
        pruned = asyncio.run(_prune(settings))
    except (OSError, ValueError, SQLAlchemyError, RedisError) as exc:
        typer.secho(f"cannot prune: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    names = ", ".join(f"{key.board}/{key.period}" for key in pruned.periods) or "none"
    typer.echo(f"pruned {len(pruned.periods)} periods ({names}), {pruned.scores} scores", err=True)


async def _prune(settings: Settings) -> Pruned:
    engine = create_engine(settings.resolved_database_url)
    redis = redis_client(settings) if settings.redis_url else None
    try:
        boards = await _boards(settings, engine)
        ranking: Ranking = (
            RedisRanking(redis, settings.redis_prefix) if redis is not None else SqlRanking(engine)
        )
        return await PeriodPruner(boards, BoardRepository(engine), ranking, 0).prune()
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    try:
        asyncio.run(_with_engine(settings, migrate))
    except (OSError, SQLAlchemyError) as exc:
        typer.secho(f"cannot migrate: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    typer.echo("database schema is up to date", err=True)


@cli.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user id (the token's sub), 1-36 chars")],
    username: Annotated[str | None, typer.Option(help="Display name")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A scope; repeat for more. Default: leaderboard:read scores:write"),
    ] = None,
    ttl: Annotated[int, typer.Option(min=1, max=366 * 86400, help="Lifetime in seconds")] = 3600,
) -> None:
    """Print a signed token (needs an HS256 secret; in dev one is generated)."""
    settings = _settings()
    try:
        keys = load_keys(settings)
        scopes = scope if scope else [s.value for s in DEFAULT_USER_SCOPES]
        typer.echo(mint_token(keys, settings, user_id, username=username, scopes=scopes, ttl=ttl))
    except ValueError as exc:
        typer.secho(f"cannot mint a token: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


@cli.command()
def secrets() -> None:
    """Print freshly generated secrets as environment lines (for deploy/.env, say)."""
    for name in ("SCOREBOARD_JWT_SECRET", "SCOREBOARD_ACTION_SECRET", "POSTGRES_PASSWORD"):
        typer.echo(f"{name}={token_urlsafe(48)}")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
