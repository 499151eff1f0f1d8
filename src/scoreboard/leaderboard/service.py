"""Leaderboard reads, with the encoded top-N cached until the ranking changes."""

from __future__ import annotations

import hashlib

import msgspec

from scoreboard.auth.principal import Principal
from scoreboard.leaderboard.ranking import RankedEntry, Ranking
from scoreboard.leaderboard.schemas import LeaderboardEntry, LeaderboardResponse, MyStanding

NEIGHBOURS = 2


def to_entry(entry: RankedEntry) -> LeaderboardEntry:
    return LeaderboardEntry(
        user_id=entry.user_id, username=entry.username, score=entry.score, rank=entry.rank
    )


class EncodedBoard(msgspec.Struct, frozen=True):
    body: bytes
    etag: str


class LeaderboardService:
    def __init__(self, ranking: Ranking) -> None:
        self._ranking = ranking
        self._cache: dict[int, tuple[int, EncodedBoard]] = {}

    async def top(self, limit: int) -> EncodedBoard:
        revision = await self._ranking.revision()
        cached = self._cache.get(limit)
        if cached and cached[0] == revision:
            return cached[1]
        entries = await self.top_entries(limit)
        body = msgspec.json.encode(LeaderboardResponse(leaderboard=entries))
        board = EncodedBoard(
            body=body, etag=f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
        )
        self._cache[limit] = (revision, board)
        return board

    async def revision(self) -> int:
        return await self._ranking.revision()

    async def top_entries(self, limit: int) -> list[LeaderboardEntry]:
        return [to_entry(e) for e in await self._ranking.top(limit)]

    async def standing(self, principal: Principal) -> MyStanding:
        around = await self._ranking.around(principal.user_id, NEIGHBOURS)
        if around is None:
            return MyStanding(
                user_id=principal.user_id,
                username=principal.username,
                score=0,
                rank=None,
                above=[],
                below=[],
            )
        return MyStanding(
            user_id=around.me.user_id,
            username=around.me.username,
            score=around.me.score,
            rank=around.me.rank,
            above=[to_entry(e) for e in around.above],
            below=[to_entry(e) for e in around.below],
        )
