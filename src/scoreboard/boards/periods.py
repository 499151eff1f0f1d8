"""Periods: which run of a board an instant belongs to, computed from the clock alone.

A board's schedule cuts time into contiguous periods ``[start, end)``; every instant lies in
exactly one, whatever the time zone does (cron semantics for daylight saving time: a boundary
in a skipped hour moves to the end of the gap, one in a repeated hour happens once). Forced
rollovers (an admin closing a period early) cut a period into segments. Nothing has to run
on time for a reset to happen: the current period is simply the one containing "now".

Keys name periods in URLs and storage: ``all`` (never resets), ``2026-12-01`` (daily, the
local date), ``2026-W49`` (weekly, the ISO week), ``2026-12`` (monthly), the start in UTC
such as ``2026-12-01T17:00Z`` (cron), ``1``, ``2``, ... (manual). A segment after a forced
rollover adds ``.2``, ``.3``, ... to the key of the period it cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from scoreboard.boards.rules import Board, Reset
from scoreboard.records import ALL_TIME

MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Period:
    key: str
    start: datetime | None  # None: since the board began
    end: datetime | None  # None: until further notice

    def contains(self, instant: datetime) -> bool:
        return (self.start is None or self.start <= instant) and (
            self.end is None or instant < self.end
        )


def _natural_key(board: Board, local_start: datetime) -> str:
    if board.reset == Reset.DAILY:
        return local_start.date().isoformat()
    if board.reset == Reset.WEEKLY:
        year, week, _ = local_start.isocalendar()
        return f"{year}-W{week:02d}"
    if board.reset == Reset.MONTHLY:
        return f"{local_start.year}-{local_start.month:02d}"
    return local_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def natural_period(board: Board, instant: datetime) -> Period:
    """The schedule's own period around ``instant``, before any forced rollover."""
    cron = board.cron
    if cron is None:
        return Period(ALL_TIME if board.reset == Reset.NEVER else "", None, None)
    local = instant.astimezone(board.zone).replace(microsecond=0)
    # Backwards from just after the whole second includes that second itself.
    start = next(CronSim(cron, local + MICROSECOND, reverse=True))
    end = next(CronSim(cron, start))
    # CronSim steps on wall-clock time: inside a repeated hour (the second pass of 01:xx when
    # clocks go back) the backward step can land one period early. Walk forward, comparing
    # instants (UTC), until start <= instant < end.
    while end.astimezone(UTC) <= instant:
        start, end = end, next(CronSim(cron, end))
    return Period(_natural_key(board, start), start.astimezone(UTC), end.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class Timeline:
    """A board's periods: its schedule, cut by the rollovers forced on it (sorted)."""

    board: Board
    rollovers: tuple[datetime, ...] = ()

    def at(self, instant: datetime) -> Period:
        natural = natural_period(self.board, instant)
        # A rollover exactly on a natural boundary changes nothing: that period is fresh.
        cuts = [
            r
            for r in self.rollovers
            if (natural.start is None or natural.start < r)
            and (natural.end is None or r < natural.end)
        ]
        before = [r for r in cuts if r <= instant]
        after = [r for r in cuts if r > instant]
        segment = len(before) + 1
        if self.board.reset == Reset.MANUAL:
            key = str(segment)
        else:
            key = natural.key if segment == 1 else f"{natural.key}.{segment}"
        return Period(
            key,
            before[-1] if before else natural.start,
            after[0] if after else natural.end,
        )

    def before(self, period: Period) -> Period | None:
        if period.start is None:
            return None
        return self.at(period.start - MICROSECOND)

    def recent(self, instant: datetime, count: int) -> list[Period]:
        """The period at ``instant`` and up to ``count - 1`` before it, newest first."""
        periods: list[Period] = []
        period: Period | None = self.at(instant)
        while period is not None and len(periods) < count:
            periods.append(period)
            period = self.before(period)
        return periods
