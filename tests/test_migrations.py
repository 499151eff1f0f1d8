"""Upgrading a database filled under the previous schema (before boards): every score and
audit row moves to the board ``global``, period ``all``, and the service carries on with
them — on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import IntegrityError

from scoreboard.app import create_app
from scoreboard.database import _alembic_config, create_engine, migrate
from scoreboard.tables import score_updates
from tests.helpers import Api, make_settings
from tests.postgres import temporary_database

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OLD_SCORES = [("ann", "Ann", 120, 3), ("ben", "Ben", 120, 2), ("cat", "Cat", 40, 1)]


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    with temporary_database(migrated=False) as url:
        yield url


def _upgrade_to(revision: str) -> object:
    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    return upgrade


async def _fill_previous_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0002"))  # type: ignore[arg-type]
        async with engine.begin() as conn:
            for i, (user, name, score, version) in enumerate(OLD_SCORES):
                at = T0 + timedelta(minutes=i)
                await conn.execute(
                    text(
                        "INSERT INTO user_scores (user_id, username, score, version, "
                        "last_updated) VALUES (:u, :n, :s, :v, :at)"
                    ),
                    {"u": user, "n": name, "s": score, "v": version, "at": at},
                )
                for change in range(version):
                    await conn.execute(
                        text(
                            "INSERT INTO score_updates (id, user_id, action_id, action_type, "
                            "score_change, timestamp, recorded_at, client_ip) VALUES "
                            "(:id, :u, :a, 'level_complete', :c, :at, :at, '10.0.0.1')"
                        ),
                        {
                            "id": str(uuid.uuid4()),
                            "u": user,
                            "a": f"{user}-action-{change}",
                            "c": score // version,
                            "at": at,
                        },
                    )
    finally:
        await engine.dispose()


async def test_scores_and_audit_rows_move_to_the_global_board_with_nothing_lost(
    empty_database: str, tmp_path: Path
) -> None:
    await _fill_previous_schema(empty_database)
    engine = create_engine(empty_database)
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            scores = (
                await conn.execute(
                    text(
                        "SELECT board_id, period_key, user_id, username, score, version "
                        "FROM user_scores ORDER BY user_id"
                    )
                )
            ).all()
            audit = (
                await conn.execute(
                    text("SELECT action_id, score_change, boards, value FROM score_updates")
                )
            ).all()
            periods = (
                await conn.execute(text("SELECT board_id, period_key FROM board_periods"))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in scores] == [
        ("global", "all", user, name, score, version) for user, name, score, version in OLD_SCORES
    ]
    assert len(audit) == sum(version for *_, version in OLD_SCORES)
    assert {json.dumps(json.loads(row.boards)) for row in audit} == {'{"global": "all"}'}
    assert {row.value for row in audit} == {None}
    assert [tuple(row) for row in periods] == [("global", "all")]

    # The service reads the migrated board as before and keeps writing next to it.
    settings = make_settings(empty_database, tmp_path)
    async with AsyncTestClient(app=create_app(settings)) as client:
        api = Api(client)
        board = await api.leaderboard()
        assert [(e["userId"], e["score"], e["rank"]) for e in board] == [
            ("ann", 120, 1),
            ("ben", 120, 1),
            ("cat", 40, 3),
        ]
        done = await api.score("cat")
        assert (done["newScore"], done["rank"]) == (50, 3)


def _downgrade_to(revision: str) -> object:
    def downgrade(connection: Connection) -> None:
        command.downgrade(_alembic_config(connection), revision)

    return downgrade


async def test_0004_indexes_the_audit_log_by_time_and_tunes_autovacuum_both_ways(
    empty_database: str,
) -> None:
    engine = create_engine(empty_database)
    postgres = engine.dialect.name == "postgresql"

    async def state() -> tuple[bool, list[str]]:
        async with engine.connect() as conn:
            indexes = await conn.run_sync(
                lambda sync: [i["name"] for i in inspect(sync).get_indexes("score_updates")]
            )
            options: list[str] = []
            if postgres:
                found = await conn.scalar(
                    text("SELECT reloptions FROM pg_class WHERE relname = 'user_scores'")
                )
                options = sorted(found or [])
        return "ix_score_updates_recorded_at" in indexes, options

    try:
        await migrate(engine)
        indexed, options = await state()
        assert indexed
        if postgres:
            assert "autovacuum_vacuum_scale_factor=0.01" in options
            assert "autovacuum_vacuum_threshold=1000" in options
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade_to("0003"))  # type: ignore[arg-type]
        assert await state() == (False, [])
    finally:
        await engine.dispose()


async def test_0005_gives_every_audit_row_its_issue_time_and_keeps_action_ids_unique(
    empty_database: str,
) -> None:
    """Rows written under 0004 get their recorded_at as issue time. SQLite keeps the plain
    table and ``action_id`` UNIQUE on its own; PostgreSQL partitions it by month with the
    unique key (action_id, issued_at). Both go back to 0004 with every row."""
    engine = create_engine(empty_database)
    postgres = engine.dialect.name == "postgresql"
    old_rows = [(f"old-{i}", T0 - timedelta(days=40 * i)) for i in range(3)]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0004"))  # type: ignore[arg-type]
            for action_id, at in old_rows:
                await conn.execute(
                    text(
                        "INSERT INTO score_updates (id, user_id, action_id, action_type, "
                        "score_change, boards, timestamp, recorded_at) VALUES "
                        "(:id, 'ann', :a, 'level_complete', 10, '{}', :at, :at)"
                    ),
                    {"id": str(uuid.uuid4()), "a": action_id, "at": at},
                )
        await migrate(engine)

        async with engine.connect() as conn:
            issued = {
                row.action_id: row.issued_at
                for row in await conn.execute(
                    select(score_updates.c.action_id, score_updates.c.issued_at)
                )
            }
            indexes = await conn.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("score_updates")}
            )
            unique = await conn.run_sync(
                lambda sync: [
                    tuple(u["column_names"])
                    for u in inspect(sync).get_unique_constraints("score_updates")
                ]
            )
        assert issued == dict(old_rows)
        assert {"ix_score_updates_user_recorded", "ix_score_updates_recorded_at"} <= indexes
        if postgres:
            assert unique == [("action_id", "issued_at")]
        else:
            assert unique == [("action_id",)]
            assert "ix_score_updates_issued_at" in indexes
        # One action id, one row: a second row with the same action id is refused (on
        # PostgreSQL, where the key holds issued_at, with the same issue time).
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    score_updates.insert().values(
                        id=str(uuid.uuid4()),
                        user_id="ann",
                        action_id="old-0",
                        action_type="level_complete",
                        score_change=10,
                        boards="{}",
                        timestamp=T0,
                        recorded_at=T0,
                        issued_at=T0 if postgres else T0 + timedelta(days=31),
                    )
                )

        async with engine.begin() as conn:
            await conn.run_sync(_downgrade_to("0004"))  # type: ignore[arg-type]
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("score_updates")}
            )
            actions = (await conn.execute(text("SELECT action_id FROM score_updates"))).scalars()
            assert sorted(actions) == sorted(action for action, _ in old_rows)
        assert "issued_at" not in columns
    finally:
        await engine.dispose()
