"""The `scoreboard` command: serve, migrate, token."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from scoreboard.auth.principal import DEFAULT_USER_SCOPES
from scoreboard.auth.tokens import mint_token
from scoreboard.config import InsecureSettingsError, Settings
from scoreboard.database import create_engine, migrate
from scoreboard.keys import load_keys
from scoreboard.logging import configure_logging

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
    except (ValidationError, InsecureSettingsError) as exc:
        typer.secho(f"configuration error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    return settings


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
    except (ValueError, OSError) as exc:
        typer.secho(f"cannot start: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    typer.echo(f"Scoreboard listening on http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        server_header=False,
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date."""
    settings = _settings()

    async def run() -> None:
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
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


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
