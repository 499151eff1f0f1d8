"""Leaderboard reads: pages, friends views and standings of any readable board period, with
encoded pages cached until their board changes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import msgspec

from scoreboard.auth.principal import Principal
from scoreboard.boards.service import BoardRegistry
from scoreboard.leaderboard.ranking import RankedEntry, Ranking
from scoreboard.leaderboard.schemas import (
    BoardLeaderboard,
    BoardStanding,
    LeaderboardEntry,
    LeaderboardResponse,
    MyStanding,
)
from scoreboard.records import GLOBAL, BoardPeriod

NEIGHBOURS = 2
ENCODED_CACHE_SIZE = 512  # (board, period, limit, offset) pages kept encoded


def to_entry(entry: RankedEntry) -> LeaderboardEntry:
    return LeaderboardEntry(
        user_id=entry.user_id, username=entry.username, score=entry.score, rank=entry.rank
    )


def percentile(rank: int, total: int) -> float:
    """The share of players whose score is not better than this rank's, in percent."""
    return round(100 * (total - rank + 1) / max(total, 1), 2)


class EncodedBoard(msgspec.Struct, frozen=True):
    body: bytes
    etag: str


def encoded(value: msgspec.Struct) -> EncodedBoard:
    body = msgspec.json.encode(value)
    return EncodedBoard(body=body, etag=f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"')


class LeaderboardService:
    def __init__(self, ranking: Ranking, boards: BoardRegistry) -> None:
        self._ranking = ranking
        self.boards = boards
        self._cache: OrderedDict[tuple[object, ...], tuple[int, EncodedBoard]] = OrderedDict()

    def key(self, board: str, period: str = "current") -> BoardPeriod:
        """Raises BoardNotFound / PeriodNotFound for what cannot be read."""
        entry, found = self.boards.resolve(board, period)
        return entry.key(found)

    async def _cached(self, key: BoardPeriod, limit: int, offset: int, spec: bool) -> EncodedBoard:
        """A page, encoded once per change of its board. ``spec``: the spec's bare shape."""
        cache_key = (spec, key, limit, offset)
        revision = await self._ranking.revision(key)
        hit = self._cache.get(cache_key)
        if hit and hit[0] == revision:
            self._cache.move_to_end(cache_key)
            return hit[1]
        entries = [to_entry(e) for e in await self._ranking.top(key, limit, offset)]
        if spec:
            board = encoded(LeaderboardResponse(leaderboard=entries))
        else:
            total = await self._ranking.total(key)
            board = encoded(BoardLeaderboard(key.board, key.period, total, entries))
        self._cache[cache_key] = (revision, board)
        if len(self._cache) > ENCODED_CACHE_SIZE:
            self._cache.popitem(last=False)
        return board

    async def top(self, limit: int) -> EncodedBoard:
        """The spec's ``GET /api/leaderboard``: the current top of ``global``."""
        key = self.key(GLOBAL)
        return await self._cached(key, limit, 0, spec=True)

    async def page(self, key: BoardPeriod, limit: int, offset: int) -> EncodedBoard:
        return await self._cached(key, limit, offset, spec=False)

    async def friends(self, key: BoardPeriod, user_ids: Sequence[str]) -> EncodedBoard:
        entries = [to_entry(e) for e in await self._ranking.ranks_of(key, user_ids)]
        total = await self._ranking.total(key)
        return encoded(BoardLeaderboard(key.board, key.period, total, entries))

    async def revision(self, key: BoardPeriod) -> int:
        return await self._ranking.revision(key)

    async def top_entries(self, key: BoardPeriod, limit: int) -> list[LeaderboardEntry]:
        return [to_entry(e) for e in await self._ranking.top(key, limit)]

    async def standing(self, principal: Principal) -> MyStanding:
        """The spec's ``GET /api/leaderboard/me``: on the current ``global`` period."""
        mine = await self.board_standing(principal, self.key(GLOBAL), NEIGHBOURS)
        return MyStanding(
            user_id=mine.user_id,
            username=mine.username,
            score=mine.score,
            rank=mine.rank,
            above=mine.above,
            below=mine.below,
        )

    async def board_standing(
        self, principal: Principal, key: BoardPeriod, radius: int
    ) -> BoardStanding:
        around = await self._ranking.around(key, principal.user_id, radius)
        total = await self._ranking.total(key)
        if around is None:
            return BoardStanding(
                board=key.board,
                period=key.period,
                user_id=principal.user_id,
                username=principal.username,
                score=0,
                rank=None,
                percentile=None,
                total=total,
                above=[],
                below=[],
            )
        return BoardStanding(
            board=key.board,
            period=key.period,
            user_id=around.me.user_id,
            username=around.me.username,
            score=around.me.score,
            rank=around.me.rank,
            percentile=percentile(around.me.rank, total),
            total=total,
            above=[to_entry(e) for e in around.above],
            below=[to_entry(e) for e in around.below],
        )
