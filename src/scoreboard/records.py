"""The records every layer shares: where a score lives, a committed score, and the events that
announce changes. They sit below the domains, so rankings and the live hub need not import
the score-writing code to speak about scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Order(StrEnum):
    """Which way is better on a board: higher scores (``desc``) or lower ones (``asc``)."""

    DESC = "desc"
    ASC = "asc"


@dataclass(frozen=True, slots=True)
class BoardPeriod:
    """One ranking: a board during one of its periods. ``order`` is the board's and never
    changes, so it travels with the key for the rankings that sort by it."""

    board: str
    period: str
    order: Order = Order.DESC


GLOBAL = "global"
ALL_TIME = "all"  # the period key of a board that never resets


@dataclass(frozen=True, slots=True)
class UserScore:
    """A user's committed score in one board period. ``version`` grows with every commit
    that changes it, so caches can refuse an older value arriving late."""

    user_id: str
    username: str
    score: int
    version: int
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class ScoreEvent:
    """A user's score changed on one board (published once per board an update fed)."""

    board: str
    period: str
    user_id: str
    new_score: int
    rank: int


@dataclass(frozen=True, slots=True)
class BoardsChanged:
    """A board was created, changed, retired or rolled over: reload the definitions."""

    revision: int
