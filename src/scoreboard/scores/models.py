from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scoreboard.abuse.repository import AdminNote
from scoreboard.errors import ScoreboardError
from scoreboard.records import BoardPeriod, UserScore


@dataclass(frozen=True, slots=True)
class Completion:
    """One item of a batch: a ticket, and when it was completed (or why that time is not
    readable, which refuses this item alone)."""

    action_id: str
    timestamp: datetime | ScoreboardError


@dataclass(frozen=True, slots=True)
class ScoreChange:
    """One accepted action ticket (or admin adjustment), about to be written.

    ``points`` count on ``sum`` boards, ``value`` is what ``best`` and ``latest`` boards rank.
    ``boards`` are the ids it feeds, the primary one first; each lands in the period current
    when the batch commits. An ``admin`` change (action ``adjust`` or ``reset``) feeds one
    sum board and commits in a transaction of its own, with its admin_audit row; a reset
    sets the score to 0 there, whatever it was at that instant. A ``username`` of None (a
    game server completing a player's ticket) keeps the name the user has, else the id."""

    user_id: str
    username: str | None
    action_id: str
    action_type: str
    points: int
    timestamp: datetime
    client_ip: str | None
    boards: tuple[str, ...]
    value: int | None = None
    issued_at: datetime | None = None  # the ticket's: latest boards keep the newest run
    admin: AdminNote | None = None


@dataclass(frozen=True, slots=True)
class BoardScore:
    """A change's result on one board: the score right after it, and the committed row."""

    key: BoardPeriod
    new_score: int
    user: UserScore


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one change: its result on every board it fed, the primary one first."""

    boards: tuple[BoardScore, ...]
