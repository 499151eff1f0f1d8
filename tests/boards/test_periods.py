"""Periods from the clock: keys, boundaries in a board's time zone, daylight saving time, and
forced rollovers. Every instant must lie in exactly one period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from scoreboard.boards.periods import MICROSECOND, Period, Timeline, natural_period
from scoreboard.boards.rules import Board

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def board(reset: str, timezone: str = "UTC") -> Board:
    return Board(id="b", reset=reset, timezone=timezone)


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    """A local wall time in ``zone`` as an aware instant."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("reset", "instant", "key", "start", "end"),
    [
        ("daily", "2026-12-01T23:59:59", "2026-12-01", "2026-12-01T00:00", "2026-12-02T00:00"),
        ("daily", "2026-12-02T00:00:00", "2026-12-02", "2026-12-02T00:00", "2026-12-03T00:00"),
        # ISO weeks start on Monday; 2026-12-31 is in week 53 of 2026, 2027-01-04 in week 1.
        ("weekly", "2026-12-02T12:00:00", "2026-W49", "2026-11-30T00:00", "2026-12-07T00:00"),
        ("weekly", "2027-01-03T23:00:00", "2026-W53", "2026-12-28T00:00", "2027-01-04T00:00"),
        ("monthly", "2026-12-31T23:59:59", "2026-12", "2026-12-01T00:00", "2027-01-01T00:00"),
        ("monthly", "2027-01-01T00:00:00", "2027-01", "2027-01-01T00:00", "2027-02-01T00:00"),
    ],
)
def test_named_schedules_cut_at_local_midnight(
    reset: str, instant: str, key: str, start: str, end: str
) -> None:
    period = Timeline(board(reset, "Europe/Berlin")).at(at(instant))
    assert period == Period(key, at(start).astimezone(UTC), at(end).astimezone(UTC))


def test_the_same_instant_is_a_different_day_in_another_zone() -> None:
    instant = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 22:00 on the 1st in New York
    assert Timeline(board("daily", "UTC")).at(instant).key == "2026-12-02"
    assert Timeline(board("daily", "America/New_York")).at(instant).key == "2026-12-01"


def test_a_day_with_a_daylight_saving_change_is_23_or_25_hours_long() -> None:
    spring = Timeline(board("daily", "Europe/Berlin")).at(at("2026-03-29T12:00"))
    autumn = Timeline(board("daily", "Europe/Berlin")).at(at("2026-10-25T12:00"))
    assert spring.start
    assert spring.end
    assert autumn.start
    assert autumn.end
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)


def test_cron_boundaries_in_a_skipped_and_a_repeated_hour() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin: that boundary moves to the end of the gap
    # (03:00 CEST); on 2026-10-25 02:30 happens twice and the boundary happens once.
    timeline = Timeline(board("30 2 * * *", "Europe/Berlin"))
    spring = timeline.at(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST
    assert spring.start == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert spring.key == "2026-03-29T01:00Z"
    before = timeline.before(spring)
    assert before is not None
    assert before.start == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert before.end == spring.start
    autumn = timeline.at(datetime(2026, 10, 25, 3, 0, tzinfo=UTC))
    assert autumn.start == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    assert autumn.end == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    assert autumn.end - autumn.start == timedelta(hours=25)


@pytest.mark.parametrize(
    "reset",
    ["daily", "weekly", "monthly", "15 */6 * * *", "0 9 * * 1-5", "30 1 * * *", "*/20 2 * * *"],
)
@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
@settings(max_examples=40, deadline=None)
@given(seconds=st.integers(min_value=0, max_value=4 * 365 * 86400))
def test_every_instant_lies_in_exactly_one_period(reset: str, timezone: str, seconds: int) -> None:
    instant = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=7)
    timeline = Timeline(board(reset, timezone))
    period = timeline.at(instant)
    assert period.start is not None
    assert period.end is not None
    assert period.contains(instant)
    # Contiguous: the period after starts where this one ends, the one before ends where it
    # starts, and their keys differ.
    after = timeline.at(period.end)
    before = timeline.at(period.start - MICROSECOND)
    assert after.start == period.end
    assert before.end == period.start
    assert len({before.key, period.key, after.key}) == 3
    assert timeline.at(period.start) == period
    assert timeline.at(period.end - MICROSECOND) == period


@pytest.mark.parametrize(
    ("reset", "timezone", "repeated"),
    [
        # 01:00-02:00 happens twice in New York on 2026-11-01 (05:00-07:00 UTC), and
        # 02:00-03:00 twice in Berlin on 2026-10-25 (00:00-02:00 UTC).
        ("30 1 * * *", "America/New_York", datetime(2026, 11, 1, 5, tzinfo=UTC)),
        ("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 25, 0, tzinfo=UTC)),
        ("*/20 1 * * *", "America/New_York", datetime(2026, 11, 1, 5, tzinfo=UTC)),
    ],
)
def test_a_period_never_reopens_during_a_repeated_hour(
    reset: str, timezone: str, repeated: datetime
) -> None:
    timeline = Timeline(board(reset, timezone))
    starts = []
    for minute in range(0, 3 * 60):  # through both passes of the hour, a minute at a time
        period = timeline.at(repeated + timedelta(minutes=minute))
        assert period.contains(repeated + timedelta(minutes=minute))
        assert period.start is not None
        starts.append(period.start)
    assert starts == sorted(starts)  # time only moves forward through the periods


def test_never_and_manual_boards_have_one_open_period() -> None:
    instant = datetime(2026, 12, 2, tzinfo=UTC)
    assert Timeline(board("never")).at(instant) == Period("all", None, None)
    assert Timeline(board("manual")).at(instant) == Period("1", None, None)
    assert Timeline(board("never")).before(Period("all", None, None)) is None


def test_forced_rollovers_cut_a_period_into_segments() -> None:
    day = board("daily")
    t1 = datetime(2026, 12, 2, 10, tzinfo=UTC)
    t2 = datetime(2026, 12, 2, 15, tzinfo=UTC)
    timeline = Timeline(day, (t1, t2))
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert timeline.at(t1 - MICROSECOND) == Period("2026-12-02", midnight, t1)
    assert timeline.at(t1) == Period("2026-12-02.2", t1, t2)
    assert timeline.at(t2 + timedelta(hours=1)) == Period(
        "2026-12-02.3", t2, midnight + timedelta(days=1)
    )
    # The next day is whole again, and walking back passes every segment.
    tomorrow = datetime(2026, 12, 3, 1, tzinfo=UTC)
    assert [p.key for p in timeline.recent(tomorrow, 5)] == [
        "2026-12-03",
        "2026-12-02.3",
        "2026-12-02.2",
        "2026-12-02",
        "2026-12-01",
    ]


def test_manual_and_never_boards_count_their_rollovers() -> None:
    t1 = datetime(2026, 12, 2, 10, tzinfo=UTC)
    t2 = datetime(2026, 12, 9, 10, tzinfo=UTC)
    now = datetime(2026, 12, 20, tzinfo=UTC)
    season = Timeline(board("manual"), (t1, t2))
    assert [(p.key, p.start, p.end) for p in season.recent(now, 10)] == [
        ("3", t2, None),
        ("2", t1, t2),
        ("1", None, t1),
    ]
    forever = Timeline(board("never"), (t1,))
    assert [p.key for p in forever.recent(now, 10)] == ["all.2", "all"]


def test_a_rollover_on_a_natural_boundary_changes_nothing() -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    timeline = Timeline(board("daily"), (midnight,))
    assert timeline.at(midnight + timedelta(hours=1)).key == "2026-12-02"


def test_natural_period_ignores_rollovers() -> None:
    instant = datetime(2026, 12, 2, 10, tzinfo=UTC)
    assert natural_period(board("weekly"), instant).key == "2026-W49"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("reset", "hourly", "five-field cron"),
        ("reset", "0 0 30 2 *", "not a valid cron"),
        ("reset", "*/5 * * * * *", "five-field cron"),
        ("timezone", "Mars/Olympus", "IANA"),
        ("operator", "max", "sum"),
        ("order", "up", "desc"),
        ("keep_periods", 1001, "less than or equal"),
        ("id", "Has-Capitals", "pattern"),
    ],
)
def test_bad_definitions_are_refused_with_a_reason(field: str, value: object, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Board.model_validate({"id": "b", field: value})
    assert words in str(refused.value)
