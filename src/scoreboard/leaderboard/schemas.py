from __future__ import annotations

import msgspec


class LeaderboardEntry(msgspec.Struct, rename="camel"):
    user_id: str
    username: str
    score: int
    rank: int


class LeaderboardResponse(msgspec.Struct, rename="camel"):
    leaderboard: list[LeaderboardEntry]


class MyStanding(msgspec.Struct, rename="camel"):
    """The caller's own place. ``rank`` is null (and the lists empty) before a first score."""

    user_id: str
    username: str
    score: int
    rank: int | None
    above: list[LeaderboardEntry]
    below: list[LeaderboardEntry]
