"""What the database says the rankings hold: the cache check reads it in bounded pieces.

Every read here costs what it returns, never the size of a board: a chunk of users by id,
the next slice of a period in user id order, the users whose scores changed since an
instant (from the audit log's ``recorded_at`` index), or a whole period streamed in chunks
from one snapshot for a rebuild.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.records import BoardPeriod, UserScore
from scoreboard.tables import score_updates, user_scores

COLUMNS = (
    user_scores.c.user_id,
    user_scores.c.username,
    user_scores.c.score,
    user_scores.c.version,
    user_scores.c.last_updated,
)


def _user(row: Any) -> UserScore:
    return UserScore(row.user_id, row.username, row.score, row.version, row.last_updated)


def _of(key: BoardPeriod) -> Any:
    return and_(user_scores.c.board_id == key.board, user_scores.c.period_key == key.period)


@dataclass
class Changes:
    users: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    resume_at: datetime | None = None  # more changes follow this instant


class CommittedScores:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def users(self, key: BoardPeriod, user_ids: Sequence[str]) -> dict[str, UserScore]:
        """The committed rows of these users (absent ones are left out)."""
        if not user_ids:
            return {}
        query = select(*COLUMNS).where(_of(key), user_scores.c.user_id.in_(user_ids))
        async with self._engine.connect() as conn:
            return {row.user_id: _user(row) for row in await conn.execute(query)}

    async def after(self, key: BoardPeriod, user_id: str, limit: int) -> list[UserScore]:
        """Up to ``limit`` users of the period whose ids sort after ``user_id`` (the primary
        key's order: one index range scan)."""
        query = (
            select(*COLUMNS)
            .where(_of(key), user_scores.c.user_id > user_id)
            .order_by(user_scores.c.user_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_user(row) for row in await conn.execute(query)]

    async def changed_since(self, since: datetime, limit: int) -> Changes:
        """The users each (board, period) saw a change of since ``since``, by the audit log,
        oldest first: at most ``limit`` audit rows, and where the next call resumes when
        there were more."""
        query = (
            select(score_updates.c.user_id, score_updates.c.boards, score_updates.c.recorded_at)
            .where(score_updates.c.recorded_at >= since)
            .order_by(score_updates.c.recorded_at)
            .limit(limit)
        )
        changes = Changes()
        rows = 0
        parsed: dict[str, list[tuple[str, str]]] = {}  # a few distinct texts, parsed once
        async with self._engine.connect() as conn:
            # Small partitions: the loop gets control back every few hundred rows.
            result = await conn.stream(query.execution_options(yield_per=250))
            async for row in result:
                rows += 1
                fed = parsed.get(row.boards)
                if fed is None:
                    fed = list(json.loads(row.boards).items())
                    if len(parsed) < 1_000:
                        parsed[row.boards] = fed
                for board_period in fed:
                    changes.users[board_period].add(row.user_id)
                if rows == limit:
                    changes.resume_at = row.recorded_at
        return changes

    async def stream(self, key: BoardPeriod, chunk: int) -> AsyncIterator[list[UserScore]]:
        """The whole period, ``chunk`` users at a time, from one snapshot (one query)."""
        query = select(*COLUMNS).where(_of(key)).execution_options(yield_per=chunk)
        async with self._engine.connect() as conn:
            result = await conn.stream(query)
            async for rows in result.partitions(chunk):
                yield [_user(row) for row in rows]
