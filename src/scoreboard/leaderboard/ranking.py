"""Rankings: the protocol every backend implements, and the in-process one.

The rule, identical in every backend: ``rank = 1 + number of users with a strictly higher
score`` (competition ranking); listing order is score descending, then whoever reached that
score first (``last_updated``), then user id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sortedcontainers import SortedList

from scoreboard.scores.models import UserScore


@dataclass(frozen=True, slots=True)
class RankedEntry:
    user_id: str
    username: str
    score: int
    rank: int


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    me: RankedEntry
    above: list[RankedEntry]
    below: list[RankedEntry]


class Ranking(Protocol):
    """A ranking kept equal to the committed scores. ``apply`` ignores stale versions, so
    post-commit updates may arrive in any order."""

    async def revision(self) -> int:
        """Grows whenever anything in the ranking changes (cache key for encoded boards)."""
        ...

    async def replace_all(self, users: Iterable[UserScore]) -> None: ...

    async def apply(self, users: Sequence[UserScore]) -> None: ...

    async def top(self, limit: int) -> list[RankedEntry]: ...

    async def rank_of(self, user_id: str) -> RankedEntry | None: ...

    async def around(self, user_id: str, span: int) -> Neighbourhood | None: ...


SortKey = tuple[int, datetime, str]


def sort_key(user: UserScore) -> SortKey:
    return (-user.score, user.last_updated, user.user_id)


class MemoryRanking:
    """Sorted in-process ranking: O(log n) updates and rank look-ups at a million users."""

    def __init__(self) -> None:
        self._users: dict[str, UserScore] = {}
        self._order = SortedList()
        # From the clock, so revisions (and the live versions made from them) keep growing
        # across restarts.
        self._revision = int(time.time() * 1000)

    async def revision(self) -> int:
        return self._revision

    async def replace_all(self, users: Iterable[UserScore]) -> None:
        self._users = {user.user_id: user for user in users}
        self._order = SortedList(sort_key(user) for user in self._users.values())
        self._revision += 1

    async def apply(self, users: Sequence[UserScore]) -> None:
        for user in users:
            current = self._users.get(user.user_id)
            if current is not None:
                if current.version >= user.version:
                    continue
                self._order.remove(sort_key(current))
            self._users[user.user_id] = user
            self._order.add(sort_key(user))
            self._revision += 1

    def _rank_for_score(self, score: int) -> int:
        return 1 + int(self._order.bisect_left((-score,)))

    def _entry(self, key: SortKey, rank: int) -> RankedEntry:
        user = self._users[key[2]]
        return RankedEntry(
            user_id=user.user_id, username=user.username, score=user.score, rank=rank
        )

    def _entries(self, start: int, stop: int) -> list[RankedEntry]:
        """Entries at positions [start, stop): the first entry of a run of equal scores at
        position p has exactly p users above it; the rest of the run share its rank."""
        entries: list[RankedEntry] = []
        for position, key in enumerate(self._order.islice(start, stop), start):
            score = -key[0]
            if not entries:
                rank = self._rank_for_score(score)
            elif score != entries[-1].score:
                rank = position + 1
            else:
                rank = entries[-1].rank
            entries.append(self._entry(key, rank))
        return entries

    async def top(self, limit: int) -> list[RankedEntry]:
        return self._entries(0, limit)

    async def rank_of(self, user_id: str) -> RankedEntry | None:
        user = self._users.get(user_id)
        if user is None:
            return None
        return self._entry(sort_key(user), self._rank_for_score(user.score))

    async def around(self, user_id: str, span: int) -> Neighbourhood | None:
        user = self._users.get(user_id)
        if user is None:
            return None
        index = int(self._order.index(sort_key(user)))
        start = max(0, index - span)
        entries = self._entries(start, index + span + 1)
        position = index - start
        return Neighbourhood(
            me=entries[position], above=entries[:position], below=entries[position + 1 :]
        )
