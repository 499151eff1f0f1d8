"""A throw-away PostgreSQL database per test run, on the server named by
SCOREBOARD_TEST_POSTGRES_URL (default: the local server, database `test`).

With CI=true an unreachable server fails the run; elsewhere the PostgreSQL tests skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from scoreboard.database import create_engine, migrate

ADMIN_URL = os.environ.get(
    "SCOREBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_plain(ADMIN_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def unreachable(reason: str) -> None:
    message = (
        f"PostgreSQL is not reachable at {ADMIN_URL} ({reason}). Start it, or point "
        "SCOREBOARD_TEST_POSTGRES_URL at a server where the user may CREATE DATABASE."
    )
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def temporary_database(*, migrated: bool = True) -> Iterator[str]:
    """Create a uniquely named database and yield its SQLAlchemy URL; drop it afterwards."""
    name = f"scoreboard_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unreachable(str(exc) or type(exc).__name__)
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        if migrated:
            asyncio.run(_migrate(rendered))
        yield rendered
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def truncate(url: str) -> None:
    conn = await asyncpg.connect(_plain(url), timeout=5)
    try:
        # Everything a test can write; the board revision moves on so no registry reuses it.
        await conn.execute(
            "TRUNCATE score_updates, user_scores, boards, board_rollovers, board_periods, "
            "abuse_flags, suspensions, admin_audit"
        )
        await conn.execute("UPDATE board_revision SET revision = revision + 1")
    finally:
        await conn.close()
