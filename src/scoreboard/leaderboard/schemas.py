from __future__ import annotations

import msgspec


class LeaderboardEntry(msgspec.Struct, rename="camel"):
    user_id: str
    username: str
    score: int
    rank: int


class LeaderboardResponse(msgspec.Struct, rename="camel"):
    """The spec's shape: the top of the board ``global``."""

    leaderboard: list[LeaderboardEntry]


class BoardLeaderboard(msgspec.Struct, rename="camel"):
    """A page of one board period (or, with ``users=``, just those users)."""

    board: str
    period: str
    total: int
    leaderboard: list[LeaderboardEntry]


class MyStanding(msgspec.Struct, rename="camel"):
    """The caller's own place. ``rank`` is null (and the lists empty) before a first score."""

    user_id: str
    username: str
    score: int
    rank: int | None
    above: list[LeaderboardEntry]
    below: list[LeaderboardEntry]


class BoardStanding(msgspec.Struct, rename="camel"):
    """The caller's place on a board period. ``percentile`` is the share of players whose
    score is not better than the caller's, in percent (100: the top); null before a score."""

    board: str
    period: str
    user_id: str
    username: str
    score: int
    rank: int | None
    percentile: float | None
    total: int
    above: list[LeaderboardEntry]
    below: list[LeaderboardEntry]
