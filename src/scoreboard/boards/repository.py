"""The SQL of boards: runtime definitions, retirements, forced rollovers, the revision that
orders board changes against score writes, and the periods that hold scores."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scoreboard.clock import Clock
from scoreboard.database import upsert_into
from scoreboard.tables import board_periods, board_revision, board_rollovers, boards, user_scores

DELETE_CHUNK = 10_000  # rows per statement when a period is pruned: short locks, small WAL


@dataclass(frozen=True, slots=True)
class StoredBoard:
    id: str
    definition: dict[str, Any] | None  # None: the file defines it (the row records retirement)
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredBoards:
    revision: int
    boards: dict[str, StoredBoard]
    rollovers: dict[str, tuple[datetime, ...]]  # sorted, per board


class BoardRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        """The database (the pruner's loop also keeps the audit log's partitions with it)."""
        return self._engine

    @staticmethod
    async def revision(conn: AsyncConnection, *, share: bool = False) -> int:
        """The board revision. ``share`` locks it FOR SHARE until the transaction ends, so a
        board change (which updates it) waits for the writes in flight, and they for it."""
        query = select(board_revision.c.revision).where(board_revision.c.id == 1)
        if share:
            query = query.with_for_update(read=True)
        return int(await conn.scalar(query) or 0)

    @staticmethod
    async def bump(conn: AsyncConnection) -> int:
        """Start a board change: takes the revision row's lock (waiting for score writes in
        flight) and returns the new revision."""
        result = await conn.execute(
            update(board_revision)
            .where(board_revision.c.id == 1)
            .values(revision=board_revision.c.revision + 1)
            .returning(board_revision.c.revision)
        )
        return int(result.scalar_one())

    @asynccontextmanager
    async def changing(self, clock: Clock) -> AsyncIterator[tuple[AsyncConnection, datetime]]:
        """A board change: one write transaction holding the revision row's lock. "Now" is
        read once the lock is held, so every score write ordered before the change also
        happened before its instant."""
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(sqlite_write=True)
            async with conn.begin():
                await self.bump(conn)
                yield conn, clock()

    @staticmethod
    async def load(conn: AsyncConnection) -> StoredBoards:
        revision = await BoardRepository.revision(conn)
        rows = await conn.execute(select(boards))
        stored = {
            row.id: StoredBoard(
                row.id,
                json.loads(row.definition) if row.definition is not None else None,
                row.created_at,
                row.retired_at,
            )
            for row in rows
        }
        cuts: dict[str, list[datetime]] = {}
        query = select(board_rollovers.c.board_id, board_rollovers.c.at).order_by(
            board_rollovers.c.at
        )
        for row in await conn.execute(query):
            cuts.setdefault(row.board_id, []).append(row.at)
        return StoredBoards(revision, stored, {b: tuple(at) for b, at in cuts.items()})

    async def load_now(self) -> StoredBoards:
        async with self._engine.connect() as conn:
            return await self.load(conn)

    @staticmethod
    async def save_definition(
        conn: AsyncConnection, board_id: str, definition: dict[str, Any], now: datetime
    ) -> None:
        """Create or change a runtime board (and bring a retired one back)."""
        statement = upsert_into(conn, boards).values(
            id=board_id,
            definition=json.dumps(definition, sort_keys=True),
            created_at=now,
            updated_at=now,
            retired_at=None,
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "definition": statement.excluded.definition,
                    "updated_at": statement.excluded.updated_at,
                    "retired_at": None,
                },
            )
        )

    @staticmethod
    async def retire(conn: AsyncConnection, board_id: str, now: datetime) -> None:
        statement = upsert_into(conn, boards).values(
            id=board_id, definition=None, created_at=now, updated_at=now, retired_at=now
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["id"], set_={"updated_at": now, "retired_at": now}
            )
        )

    @staticmethod
    async def add_rollover(
        conn: AsyncConnection, board_id: str, at: datetime, closed: str, opened: str
    ) -> None:
        await conn.execute(
            insert(board_rollovers).values(
                id=str(uuid.uuid4()),
                board_id=board_id,
                at=at,
                closed_period=closed,
                opened_period=opened,
            )
        )

    @staticmethod
    async def note_periods(
        conn: AsyncConnection, periods: Iterable[tuple[str, str]], now: datetime
    ) -> None:
        rows = [{"board_id": b, "period_key": p, "first_score_at": now} for b, p in periods]
        if rows:
            statement = upsert_into(conn, board_periods).on_conflict_do_nothing()
            await conn.execute(statement, rows)

    async def stored_periods(self) -> list[tuple[str, str]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(board_periods.c.board_id, board_periods.c.period_key).order_by(
                    board_periods.c.board_id, board_periods.c.period_key
                )
            )
            return [(row.board_id, row.period_key) for row in rows]

    async def delete_periods(
        self, periods: Sequence[tuple[str, str]], revision: int
    ) -> tuple[list[tuple[str, str]], int]:
        """Delete the scores of these periods, a chunk per transaction, as long as the boards
        are still at ``revision`` (the one the periods were chosen on): a board change made
        meanwhile (a rollover elsewhere, say) stops it. Returns the periods deleted and the
        rows."""
        deleted = 0
        done: list[tuple[str, str]] = []
        for board_id, period_key in periods:
            of_period = and_(
                user_scores.c.board_id == board_id, user_scores.c.period_key == period_key
            )
            while True:
                async with self._engine.connect() as conn:
                    conn = await conn.execution_options(sqlite_write=True)
                    async with conn.begin():
                        if await self.revision(conn, share=True) != revision:
                            return done, deleted
                        chunk = (
                            select(user_scores.c.user_id).where(of_period).limit(DELETE_CHUNK)
                        ).scalar_subquery()
                        result = await conn.execute(
                            delete(user_scores).where(of_period, user_scores.c.user_id.in_(chunk))
                        )
                        deleted += result.rowcount
                        finished = result.rowcount < DELETE_CHUNK
                        if finished:
                            await conn.execute(
                                delete(board_periods).where(
                                    board_periods.c.board_id == board_id,
                                    board_periods.c.period_key == period_key,
                                )
                            )
                if finished:
                    done.append((board_id, period_key))
                    break
        return done, deleted
