from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ScoreChange:
    """One accepted action ticket, about to be written."""

    user_id: str
    username: str
    action_id: str
    action_type: str
    points: int
    timestamp: datetime
    client_ip: str | None


@dataclass(frozen=True, slots=True)
class UserScore:
    """A user's committed score. ``version`` grows with every commit that changes it."""

    user_id: str
    username: str
    score: int
    version: int
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one change: the score right after it, and the user's committed row."""

    new_score: int
    user: UserScore
