"""What a board is: how scores combine on it, which way is better, and when it starts over.

Boards come from the catalog file (``[boards.<id>]`` tables) or from the admin API; both are
validated by the same model, so a definition the file refuses is refused at runtime too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scoreboard.records import GLOBAL, Order

BOARD_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
BOARD_ID_PATTERN = re.compile(BOARD_ID)
MAX_KEEP_PERIODS = 1000


class Operator(StrEnum):
    SUM = "sum"  # points add up (the spec's behaviour)
    BEST = "best"  # keep the best value, by the board's order
    LATEST = "latest"  # the newest value replaces the old one

    @property
    def takes_value(self) -> bool:
        """Does the board rank a value a trusted backend supplies, rather than points?"""
        return self is not Operator.SUM


class Reset(StrEnum):
    NEVER = "never"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    MANUAL = "manual"


# The named schedules as cron expressions: a period starts at local midnight, on Monday for
# weeks (ISO weeks), on the 1st for months.
NAMED_SCHEDULES: dict[str, str] = {
    Reset.DAILY: "0 0 * * *",
    Reset.WEEKLY: "0 0 * * 1",
    Reset.MONTHLY: "0 0 1 * *",
}


def _is_cron(text: str) -> bool:
    return len(text.split()) == 5


class Board(BaseModel):
    """A board's rules. ``reset`` is a named schedule or a five-field cron expression
    (minute hour day month weekday), read in ``timezone``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=BOARD_ID)
    title: str = Field(default="", max_length=200)
    operator: Operator = Operator.SUM
    order: Order = Order.DESC
    reset: str = Field(default=Reset.NEVER.value, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    keep_periods: int = Field(default=1, ge=0, le=MAX_KEEP_PERIODS)

    @field_validator("reset")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        value = value.strip()
        if value in {r.value for r in Reset}:
            return value
        if not _is_cron(value):
            raise ValueError(
                "reset must be never, daily, weekly, monthly, manual or a five-field cron "
                f"expression (minute hour day month weekday), not '{value}'"
            )
        try:
            next(CronSim(value, datetime.now(UTC)))
        except (CronSimError, StopIteration) as exc:
            raise ValueError(f"'{value}' is not a valid cron expression: {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"'{value}' is not an IANA time zone such as Europe/Paris") from exc
        return value

    @property
    def display_title(self) -> str:
        return self.title or self.id

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def cron(self) -> str | None:
        """The schedule's cron expression; None for boards without clock periods."""
        if self.reset in (Reset.NEVER, Reset.MANUAL):
            return None
        return NAMED_SCHEDULES.get(self.reset, self.reset)

    def same_rules(self, other: Board) -> bool:
        """Do both rank the same way? (Title and retention may change; these may not.)"""
        keys = ("operator", "order", "reset", "timezone")
        return all(getattr(self, key) == getattr(other, key) for key in keys)


DEFAULT_BOARD = Board(id=GLOBAL, title="All time")
