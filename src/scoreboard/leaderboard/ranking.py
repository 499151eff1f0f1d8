"""Rankings: the protocol every backend implements, and the in-process one.

A ranking holds many boards, one per (board, period). The rule, identical in every backend:
``rank = 1 + number of users with a strictly better score`` (competition ranking), better
meaning higher on ``desc`` boards and lower on ``asc`` ones; listing order is best score
first, then whoever reached that score first (``last_updated``), then user id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sortedcontainers import SortedList

from scoreboard.records import BoardPeriod, Order, UserScore


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


Applied = Sequence[tuple[BoardPeriod, UserScore]]


class Ranking(Protocol):
    """Rankings kept equal to the committed scores. ``apply`` ignores stale versions, so
    post-commit updates may arrive in any order."""

    async def revision(self, key: BoardPeriod) -> int:
        """Grows whenever anything in the board changes; never goes back, not even across
        periods or restarts (it starts from the clock)."""
        ...

    async def replace_all(self, key: BoardPeriod, users: Iterable[UserScore]) -> None: ...

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        """Apply committed rows; return each one's standing right after."""
        ...

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]: ...

    async def rank_for(self, key: BoardPeriod, score: int) -> int:
        """``1 +`` the users with a score strictly better than ``score``."""
        ...

    async def total(self, key: BoardPeriod) -> int: ...

    async def rank_of(self, key: BoardPeriod, user_id: str) -> RankedEntry | None: ...

    async def ranks_of(self, key: BoardPeriod, user_ids: Sequence[str]) -> list[RankedEntry]:
        """Those of the users who are on the board, in listing order (a friends view)."""
        ...

    async def around(self, key: BoardPeriod, user_id: str, span: int) -> Neighbourhood | None: ...

    async def drop(self, key: BoardPeriod) -> None:
        """Forget a pruned period."""
        ...


SortKey = tuple[int, datetime, str]
Listed = tuple[str, str, int]  # user id, username, score: one row of the listing


def ranked(rows: Iterable[Listed], start: int, first_rank: int) -> list[RankedEntry]:
    """Rank a window of the listing that begins at position ``start``, given the first row's
    rank (one more than the users better than it): a new score takes its position's rank,
    an equal score its predecessor's. Every backend ranks its windows through here."""
    entries: list[RankedEntry] = []
    for position, (user_id, username, score) in enumerate(rows, start):
        if not entries:
            rank = first_rank
        elif score != entries[-1].score:
            rank = position + 1
        else:
            rank = entries[-1].rank
        entries.append(RankedEntry(user_id, username, score, rank))
    return entries


def sort_key(user: UserScore, order: Order) -> SortKey:
    """Listing order as a tuple: the signed score makes "better" sort first either way."""
    return (-user.score if order is Order.DESC else user.score, user.last_updated, user.user_id)


def clock_revision(previous: int = 0) -> int:
    """The next revision: at least the clock in microseconds, so it keeps growing across
    restarts and from one period's board to the next."""
    return max(previous + 1, time.time_ns() // 1000)


class MemoryBoard:
    """One board period, sorted in process: O(log n) updates and rank look-ups."""

    def __init__(self, order: Order) -> None:
        self.order = order
        self.users: dict[str, UserScore] = {}
        self.listing = SortedList()
        self.revision = clock_revision()

    def replace(self, users: Iterable[UserScore]) -> None:
        self.users = {user.user_id: user for user in users}
        self.listing = SortedList(sort_key(user, self.order) for user in self.users.values())
        self.revision = clock_revision(self.revision)

    def apply(self, user: UserScore) -> None:
        current = self.users.get(user.user_id)
        if current is not None:
            if current.version >= user.version:
                return
            self.listing.remove(sort_key(current, self.order))
        self.users[user.user_id] = user
        self.listing.add(sort_key(user, self.order))
        self.revision = clock_revision(self.revision)

    def rank_for(self, user: UserScore) -> int:
        return self.rank_for_score(user.score)

    def rank_for_score(self, score: int) -> int:
        return 1 + int(self.listing.bisect_left((-score if self.order is Order.DESC else score,)))

    def entry(self, user_id: str, rank: int) -> RankedEntry:
        user = self.users[user_id]
        return RankedEntry(user.user_id, user.username, user.score, rank)

    def entries(self, start: int, stop: int) -> list[RankedEntry]:
        """Entries at positions [start, stop)."""
        users = [self.users[key[2]] for key in self.listing.islice(start, stop)]
        if not users:
            return []
        rows = [(user.user_id, user.username, user.score) for user in users]
        return ranked(rows, start, self.rank_for(users[0]))

    def standing(self, user_id: str) -> RankedEntry | None:
        user = self.users.get(user_id)
        return None if user is None else self.entry(user_id, self.rank_for(user))


class MemoryRanking:
    """Every board period of this process, in memory (the embedded shape)."""

    def __init__(self) -> None:
        self._boards: dict[tuple[str, str], MemoryBoard] = {}

    def _board(self, key: BoardPeriod) -> MemoryBoard:
        board = self._boards.get((key.board, key.period))
        if board is None:
            board = self._boards[(key.board, key.period)] = MemoryBoard(key.order)
        return board

    def _existing(self, key: BoardPeriod) -> MemoryBoard | None:
        return self._boards.get((key.board, key.period))

    @property
    def periods(self) -> int:
        """How many board periods are held (pruning keeps this bounded)."""
        return len(self._boards)

    async def revision(self, key: BoardPeriod) -> int:
        # A period nobody has scored in is not allocated by reading it: the clock, which
        # its first change will pass.
        board = self._existing(key)
        return board.revision if board else clock_revision()

    async def replace_all(self, key: BoardPeriod, users: Iterable[UserScore]) -> None:
        self._board(key).replace(users)

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        for key, user in changes:
            self._board(key).apply(user)
        return [self._board(key).standing(user.user_id) for key, user in changes]

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]:
        board = self._existing(key)
        return board.entries(offset, offset + limit) if board else []

    async def total(self, key: BoardPeriod) -> int:
        board = self._existing(key)
        return len(board.users) if board else 0

    async def rank_for(self, key: BoardPeriod, score: int) -> int:
        board = self._existing(key)
        return board.rank_for_score(score) if board else 1

    async def rank_of(self, key: BoardPeriod, user_id: str) -> RankedEntry | None:
        board = self._existing(key)
        return board.standing(user_id) if board else None

    async def ranks_of(self, key: BoardPeriod, user_ids: Sequence[str]) -> list[RankedEntry]:
        board = self._existing(key)
        if board is None:
            return []
        present = sorted(
            sort_key(board.users[u], board.order) for u in set(user_ids) if u in board.users
        )
        return [board.entry(k[2], board.rank_for(board.users[k[2]])) for k in present]

    async def around(self, key: BoardPeriod, user_id: str, span: int) -> Neighbourhood | None:
        board = self._existing(key)
        user = board.users.get(user_id) if board else None
        if board is None or user is None:
            return None
        index = int(board.listing.index(sort_key(user, board.order)))
        start = max(0, index - span)
        entries = board.entries(start, index + span + 1)
        position = index - start
        return Neighbourhood(entries[position], entries[:position], entries[position + 1 :])

    async def drop(self, key: BoardPeriod) -> None:
        self._boards.pop((key.board, key.period), None)
