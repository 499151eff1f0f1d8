"""The probe behind ``scoreboard_database_up``, ``scoreboard_redis_up`` and
``scoreboard_period_rollovers_total``: it sees an unreachable database and counts each board
whose period ended by the clock, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from scoreboard.database import create_engine, prepare_schema
from scoreboard.metrics import Metrics
from scoreboard.monitoring import AvailabilityProbe
from tests.helpers import MovableClock, board_registry, samples, value

THREE_BOARDS = Path(__file__).parent / "three_boards.toml"


async def test_the_probe_counts_each_period_that_ended_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    try:
        await prepare_schema(engine, auto_migrate=True)
        clock = MovableClock(datetime(2026, 12, 2, 23, 59, tzinfo=UTC))  # a Wednesday
        boards = await board_registry(engine, THREE_BOARDS, clock)
        metrics = Metrics()
        probe = AvailabilityProbe(metrics, engine, None, boards)

        def rollovers() -> dict[str, float | None]:
            found = samples(metrics.scrape().decode())
            name = "scoreboard_period_rollovers_total"
            return {b: value(found, name, board=b) for b in ("global", "weekly", "daily")}

        await probe.probe()
        await probe.probe()
        assert value(samples(metrics.scrape().decode()), "scoreboard_database_up") == 1
        assert rollovers() == {"global": None, "weekly": None, "daily": None}
        clock.move(timedelta(minutes=2))  # Thursday: a new day, the same week
        await probe.probe()
        await probe.probe()
        assert rollovers() == {"global": None, "weekly": None, "daily": 1}
        clock.move(timedelta(days=4))  # Monday: a new day and a new week
        await probe.probe()
        assert rollovers() == {"global": None, "weekly": 1, "daily": 2}
    finally:
        await engine.dispose()


async def test_an_unreachable_database_reads_as_down(tmp_path: Path) -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/nothing")
    try:
        boards_engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'boards.db'}")
        await prepare_schema(boards_engine, auto_migrate=True)
        boards = await board_registry(boards_engine, THREE_BOARDS, MovableClock())
        metrics = Metrics("production")
        probe = AvailabilityProbe(metrics, engine, None, boards)
        await probe.probe()
        assert value(samples(metrics.scrape().decode()), "scoreboard_database_up") == 0
        await boards_engine.dispose()
    finally:
        await engine.dispose()
