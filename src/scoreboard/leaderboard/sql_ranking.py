"""Ranking read straight from the database: the fallback when the Redis cache is away.

Same rule and order as every backend (score desc, first to reach it, user id). Reads only;
the database is already the truth, so there is nothing to apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.leaderboard.ranking import Neighbourhood, RankedEntry
from scoreboard.scores.models import UserScore
from scoreboard.tables import user_scores

ORDER = (user_scores.c.score.desc(), user_scores.c.last_updated, user_scores.c.user_id)


def _ahead_of(user: UserScore) -> ColumnElement[bool]:
    """Rows listed before this user."""
    return or_(
        user_scores.c.score > user.score,
        and_(user_scores.c.score == user.score, user_scores.c.last_updated < user.last_updated),
        and_(
            user_scores.c.score == user.score,
            user_scores.c.last_updated == user.last_updated,
            user_scores.c.user_id < user.user_id,
        ),
    )


class SqlRanking:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def revision(self) -> int:
        async with self._engine.connect() as conn:
            total = await conn.scalar(select(func.coalesce(func.sum(user_scores.c.version), 0)))
            return int(total or 0)

    async def replace_all(self, users: Iterable[UserScore]) -> None:
        return None

    async def apply(self, users: Sequence[UserScore]) -> None:
        return None

    async def _rank(self, score: int) -> int:
        async with self._engine.connect() as conn:
            higher = await conn.scalar(select(func.count()).where(user_scores.c.score > score))
            return 1 + int(higher or 0)

    async def _listing(self, query: Select[Any], start: int) -> list[RankedEntry]:
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        entries: list[RankedEntry] = []
        for position, row in enumerate(rows, start):
            user_id, username, score = row.user_id, row.username, int(row.score)
            if not entries:
                rank = await self._rank(score)
            elif score != entries[-1].score:
                rank = position + 1
            else:
                rank = entries[-1].rank
            entries.append(RankedEntry(user_id, username, score, rank))
        return entries

    def _page(self, offset: int, limit: int) -> Select[Any]:
        columns = (user_scores.c.user_id, user_scores.c.username, user_scores.c.score)
        return select(*columns).order_by(*ORDER).offset(offset).limit(limit)

    async def top(self, limit: int) -> list[RankedEntry]:
        return await self._listing(self._page(0, limit), 0)

    async def _user(self, user_id: str) -> UserScore | None:
        async with self._engine.connect() as conn:
            query = select(user_scores).where(user_scores.c.user_id == user_id)
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return UserScore(row.user_id, row.username, row.score, row.version, row.last_updated)

    async def rank_of(self, user_id: str) -> RankedEntry | None:
        user = await self._user(user_id)
        if user is None:
            return None
        return RankedEntry(user.user_id, user.username, user.score, await self._rank(user.score))

    async def around(self, user_id: str, span: int) -> Neighbourhood | None:
        user = await self._user(user_id)
        if user is None:
            return None
        async with self._engine.connect() as conn:
            index = int(await conn.scalar(select(func.count()).where(_ahead_of(user))) or 0)
        start = max(0, index - span)
        entries = await self._listing(self._page(start, index - start + span + 1), start)
        position = index - start
        return Neighbourhood(entries[position], entries[:position], entries[position + 1 :])
