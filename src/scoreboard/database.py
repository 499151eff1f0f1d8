"""Engines and migrations. SQLite gets WAL, full fsync, foreign keys and real transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# SQLSTATE classes that mean "the server cannot serve now", not "your statement is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown).
_UNAVAILABLE_SQLSTATE = ("08", "53", "57")


def is_unavailable(exc: BaseException) -> bool:
    """Is this failure the database being away (503), rather than a bug (500)?"""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        return exc.connection_invalidated or sqlstate[:2] in _UNAVAILABLE_SQLSTATE
    return False


def upsert_into(bind: AsyncEngine | AsyncConnection, table: Table) -> Any:
    """An INSERT that can take ON CONFLICT clauses, in the dialect of ``bind``."""
    return (postgresql if bind.dialect.name == "postgresql" else sqlite).insert(table)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,
            pool_timeout=5,
            hide_parameters=True,  # logs must not carry user ids, names or IPs
            connect_args={"timeout": 5, "command_timeout": 15},
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 5}, hide_parameters=True)
    _make_sqlite_transactional(engine)
    return engine


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (SQLAlchemy docs).

    synchronous=FULL: a commit is on disk before it is acknowledged, even across power loss.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=5000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        if is_unavailable(exc):
            return False
        raise
    return True


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "scoreboard:migrations")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _is_current(connection: Connection) -> bool:
    script = ScriptDirectory.from_config(_alembic_config(connection))
    current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(script.get_heads())


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def schema_is_current(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return await conn.run_sync(_is_current)


class SchemaNotCurrentError(RuntimeError):
    """The database schema is behind the code and automatic migration is off."""


async def prepare_schema(engine: AsyncEngine, *, auto_migrate: bool) -> None:
    """Migrate (embedded default) or insist the schema is already current (production)."""
    if auto_migrate:
        await migrate(engine)
    elif not await schema_is_current(engine):
        raise SchemaNotCurrentError("the database schema is not current: run `scoreboard migrate`")
