"""Rankings read straight from the database: the fallback while the Redis cache is away.

Same rule and order as every backend. Reads only; the database is already the truth, so
there is nothing to apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.leaderboard.ranking import Applied, Listed, Neighbourhood, RankedEntry, ranked
from scoreboard.records import BoardPeriod, Order, UserScore
from scoreboard.tables import user_scores

COLUMNS = (user_scores.c.user_id, user_scores.c.username, user_scores.c.score)


def _of(key: BoardPeriod) -> ColumnElement[bool]:
    return and_(user_scores.c.board_id == key.board, user_scores.c.period_key == key.period)


def _better(key: BoardPeriod, score: int) -> ColumnElement[bool]:
    column = user_scores.c.score
    return column > score if key.order is Order.DESC else column < score


def _order(key: BoardPeriod) -> tuple[Any, ...]:
    score = user_scores.c.score.desc() if key.order is Order.DESC else user_scores.c.score.asc()
    return (score, user_scores.c.last_updated, user_scores.c.user_id)


def _ahead_of(key: BoardPeriod, user: UserScore) -> ColumnElement[bool]:
    """Rows listed before this user."""
    return or_(
        _better(key, user.score),
        and_(user_scores.c.score == user.score, user_scores.c.last_updated < user.last_updated),
        and_(
            user_scores.c.score == user.score,
            user_scores.c.last_updated == user.last_updated,
            user_scores.c.user_id < user.user_id,
        ),
    )


class SqlRanking:
    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        """Reads go to ``read_engine`` (a replica) when given: they may lag by its delay.
        ``apply`` answers a writer about its own change, so it reads the primary."""
        self._engine = read_engine or engine
        self._primary = self if read_engine is None else SqlRanking(engine)

    async def revision(self, key: BoardPeriod) -> int:
        async with self._engine.connect() as conn:
            query = select(func.coalesce(func.sum(user_scores.c.version), 0)).where(_of(key))
            return int(await conn.scalar(query) or 0)

    async def replace_all(self, key: BoardPeriod, users: Iterable[UserScore]) -> None:
        return None

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        return [await self._primary.rank_of(key, user.user_id) for key, user in changes]

    async def rank_for(self, key: BoardPeriod, score: int) -> int:
        async with self._engine.connect() as conn:
            query = select(func.count()).where(_of(key), _better(key, score))
            return 1 + int(await conn.scalar(query) or 0)

    async def _listing(self, key: BoardPeriod, query: Select[Any], start: int) -> list[RankedEntry]:
        async with self._engine.connect() as conn:
            rows: list[Listed] = [
                (row.user_id, row.username, int(row.score)) for row in await conn.execute(query)
            ]
        if not rows:
            return []
        return ranked(rows, start, await self.rank_for(key, rows[0][2]))

    def _page(self, key: BoardPeriod, offset: int, limit: int) -> Select[Any]:
        return select(*COLUMNS).where(_of(key)).order_by(*_order(key)).offset(offset).limit(limit)

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]:
        return await self._listing(key, self._page(key, offset, limit), offset)

    async def total(self, key: BoardPeriod) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).where(_of(key))) or 0)

    async def _user(self, key: BoardPeriod, user_id: str) -> UserScore | None:
        async with self._engine.connect() as conn:
            query = select(user_scores).where(_of(key), user_scores.c.user_id == user_id)
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return UserScore(row.user_id, row.username, row.score, row.version, row.last_updated)

    async def rank_of(self, key: BoardPeriod, user_id: str) -> RankedEntry | None:
        user = await self._user(key, user_id)
        if user is None:
            return None
        rank = await self.rank_for(key, user.score)
        return RankedEntry(user.user_id, user.username, user.score, rank)

    async def ranks_of(self, key: BoardPeriod, user_ids: Sequence[str]) -> list[RankedEntry]:
        query = (
            select(*COLUMNS)
            .where(_of(key), user_scores.c.user_id.in_(set(user_ids)))
            .order_by(*_order(key))
        )
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [
            RankedEntry(row.user_id, row.username, row.score, await self.rank_for(key, row.score))
            for row in rows
        ]

    async def around(self, key: BoardPeriod, user_id: str, span: int) -> Neighbourhood | None:
        user = await self._user(key, user_id)
        if user is None:
            return None
        async with self._engine.connect() as conn:
            ahead = select(func.count()).where(_of(key), _ahead_of(key, user))
            index = int(await conn.scalar(ahead) or 0)
        start = max(0, index - span)
        entries = await self._listing(key, self._page(key, start, index - start + span + 1), start)
        position = index - start
        return Neighbourhood(entries[position], entries[:position], entries[position + 1 :])

    async def drop(self, key: BoardPeriod) -> None:
        return None
