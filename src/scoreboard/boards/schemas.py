from __future__ import annotations

from datetime import datetime

import msgspec


class PeriodView(msgspec.Struct, rename="camel"):
    key: str
    start: datetime | None
    end: datetime | None


class BoardView(msgspec.Struct, rename="camel"):
    """A board's rules; ``current`` is null once it is retired."""

    id: str
    title: str
    operator: str
    order: str
    reset: str
    timezone: str
    keep_periods: int
    actions: list[str]
    source: str
    status: str
    retired_at: datetime | None
    current: PeriodView | None
    readable_periods: list[str]


class BoardList(msgspec.Struct):
    boards: list[BoardView]
