"""The `scoreboard` command: serve, demo, migrate, rebuild-cache, prune, token."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from secrets import token_urlsafe
from typing import Annotated

import structlog
import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.actions.catalog import load_catalog
from scoreboard.audit_partitions import (
    MAX_TICKET_TTL,
    MIN_AUDIT_RETENTION,
    AuditPruned,
    PartitionsBusy,
    ensure_partitions,
    prune_audit,
)
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
from scoreboard.redis_urls import REDIS_FAILED
from scoreboard.server import make_server
from scoreboard.shapes import redis_client
from scoreboard.workers import MAX_WORKERS, bind, production_only, run_workers, stop_with_parent

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
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_WORKERS,
            help="Worker processes on the one port, production shape only [env SCOREBOARD_WORKERS]",
        ),
    ] = None,
    worker: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run the service (migrates the embedded SQLite database by itself)."""
    from scoreboard.app import create_app

    settings = _settings(host=host, port=port, workers=workers)
    configure_logging(settings)
    if worker:  # one of `serve --workers N` (scoreboard.workers)
        stop_with_parent()
        make_server(create_app(settings), settings).run(sockets=[bind(settings, listen=True)])
        return
    try:
        if settings.workers > 1 and (why := production_only(settings)):
            raise ValueError(why)
        app = create_app(settings)
        asyncio.run(_with_engine(settings, _prepare(settings)))
        if settings.workers > 1:
            raise typer.Exit(run_workers(settings, settings.workers))
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
    except (OSError, ValueError, SQLAlchemyError, *REDIS_FAILED) as exc:
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


_AGE = re.compile(r"(\d{1,6})([dh])")
MAX_AUDIT_AGE = timedelta(days=36_500)
AUDIT_AGE_OPTION = "'--audit-older-than'"


def parse_audit_age(value: str | None) -> timedelta | None:
    """``--audit-older-than``: a whole number of days (``400d``) or hours (``240h``), no
    shorter than MIN_AUDIT_RETENTION (a live ticket's audit row must stay)."""
    if value is None:
        return None
    found = _AGE.fullmatch(value.strip())
    if found is None:
        raise typer.BadParameter(
            f"'{value[:40]}' is not an age: write a whole number of days or hours, "
            "such as 400d or 240h",
            param_hint=AUDIT_AGE_OPTION,
        )
    count, unit = int(found[1]), found[2]
    age = timedelta(days=count) if unit == "d" else timedelta(hours=count)
    if age < MIN_AUDIT_RETENTION:
        raise typer.BadParameter(
            f"must be at least {MIN_AUDIT_RETENTION.days}d: a ticket lives up to "
            f"{MAX_TICKET_TTL.days} days, and while it lives its audit row is what refuses "
            "its replay",
            param_hint=AUDIT_AGE_OPTION,
        )
    if age > MAX_AUDIT_AGE:
        raise typer.BadParameter(
            f"must be at most {MAX_AUDIT_AGE.days}d", param_hint=AUDIT_AGE_OPTION
        )
    return age


@cli.command()
def prune(
    audit_older_than: Annotated[
        str | None,
        typer.Option(
            "--audit-older-than",
            metavar="AGE",
            help="Also remove the audit log (score_updates) older than AGE, e.g. 400d or "
            f"240h; at least {MIN_AUDIT_RETENTION.days}d. PostgreSQL drops whole months "
            "(partitions) that lie wholly before it; SQLite deletes the rows.",
        ),
    ] = None,
) -> None:
    """Delete the scores of closed periods past their board's keep_periods (the running
    service also does it every SCOREBOARD_PRUNE_INTERVAL seconds), and with
    --audit-older-than the old audit log."""
    age = parse_audit_age(audit_older_than)
    settings = _settings()
    try:
        pruned, audit = asyncio.run(_prune(settings, age))
    except PartitionsBusy as exc:
        typer.secho(f"cannot prune: {exc}", err=True, fg="yellow")
        raise typer.Exit(1) from exc
    except (OSError, ValueError, SQLAlchemyError, *REDIS_FAILED) as exc:
        typer.secho(f"cannot prune: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    names = ", ".join(f"{key.board}/{key.period}" for key in pruned.periods) or "none"
    typer.echo(f"pruned {len(pruned.periods)} periods ({names}), {pruned.scores} scores", err=True)
    if audit is not None:
        typer.echo(_describe_audit(audit), err=True)


def _describe_audit(audit: AuditPruned) -> str:
    before = audit.cutoff.isoformat(timespec="seconds")
    if audit.partitioned:
        names = ", ".join(audit.partitions) or "none lies wholly before it"
        return f"audit log before {before}: dropped {len(audit.partitions)} partitions ({names})"
    return f"audit log before {before}: deleted {audit.rows} rows"


async def _prune(
    settings: Settings, audit_age: timedelta | None
) -> tuple[Pruned, AuditPruned | None]:
    engine = create_engine(settings.resolved_database_url)
    redis = redis_client(settings) if settings.redis_url else None
    try:
        boards = await _boards(settings, engine)
        ranking: Ranking = (
            RedisRanking(redis, settings.redis_prefix) if redis is not None else SqlRanking(engine)
        )
        pruned = await PeriodPruner(boards, BoardRepository(engine), ranking, 0).prune()
        audit = None
        if audit_age is not None:
            now = datetime.now(UTC)
            audit = await prune_audit(engine, now - audit_age, now=now)
        return pruned, audit
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (and, on PostgreSQL, create the audit log's
    partitions of this month and the next three)."""
    settings = _settings()
    created: list[str] = []

    async def work(engine: AsyncEngine) -> None:
        await migrate(engine)
        created.extend(await ensure_partitions(engine, system_clock()))

    try:
        asyncio.run(_with_engine(settings, work))
    except (OSError, SQLAlchemyError) as exc:
        typer.secho(f"cannot migrate: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    typer.echo("database schema is up to date", err=True)
    if created:
        typer.echo(f"audit log partitions created: {', '.join(created)}", err=True)


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
