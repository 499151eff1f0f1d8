"""Closed periods past ``keep_periods`` are pruned: their scores leave the database, the
in-process ranking and Redis; what is kept stays readable; nothing else is touched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from scoreboard.app import create_app
from scoreboard.boards.periods import Timeline
from scoreboard.boards.rules import Board
from scoreboard.database import create_engine
from scoreboard.leaderboard.ranking import MemoryRanking
from scoreboard.tables import board_periods, user_scores
from tests.boards.test_boards_api import BOARDS_FILE
from tests.conftest import Backend
from tests.helpers import Api, MovableClock, bearer, problem, settings_env
from tests.redis_support import async_client

# 12:00 UTC is 07:00 in New York: the middle of the daily board's day.
DAYS = [datetime(2026, 12, d, 12, tzinfo=UTC) for d in (1, 2, 3)]


async def rows_of(database_url: str, board: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            counted = await conn.execute(
                select(user_scores.c.period_key, func.count())
                .where(user_scores.c.board_id == board)
                .group_by(user_scores.c.period_key)
            )
            scores = {row[0]: int(row[1]) for row in counted}
            noted = await conn.execute(
                select(board_periods.c.period_key).where(board_periods.c.board_id == board)
            )
            assert set(noted.scalars()) == set(scores)  # the index of periods agrees
            return scores
    finally:
        await engine.dispose()


async def test_a_period_past_keep_periods_is_pruned_everywhere(
    backend: Backend, tmp_path: Path, redis_url: str
) -> None:
    clock = MovableClock(DAYS[0])
    settings = backend.settings(tmp_path, actions_file=BOARDS_FILE)
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app=app) as client:
        api = Api(client, clock=clock)
        for day in DAYS:
            clock.set(day)
            for user in ("ann", "ben"):
                await api.score(user, "play")
        assert await rows_of(backend.database_url, "daily") == {
            "2026-12-01": 2,
            "2026-12-02": 2,
            "2026-12-03": 2,
        }
        ranking = app.state.leaderboard._ranking
        held_before = ranking.periods if isinstance(ranking, MemoryRanking) else None

        # The app runs on the test client's own event loop (in a thread): prune there.
        pruned = await asyncio.to_thread(client.blocking_portal.call, app.state.pruner.prune)

        assert [(k.board, k.period) for k in pruned.periods] == [("daily", "2026-12-01")]
        assert pruned.scores == 2
        # keep_periods = 1 for the daily board: today and yesterday remain.
        assert await rows_of(backend.database_url, "daily") == {"2026-12-02": 2, "2026-12-03": 2}
        assert await rows_of(backend.database_url, "global") == {"all": 2}
        gone = await client.get(
            "/api/boards/daily/leaderboard",
            params={"period": "2026-12-01"},
            headers=bearer(api.token("r")),
        )
        problem(gone, 404, "period_not_found")
        kept = await api.board("daily", period="previous")
        assert [(e["userId"], e["score"]) for e in kept["leaderboard"]] == [
            ("ann", 10),
            ("ben", 10),
        ]
        if held_before is not None:
            assert isinstance(ranking, MemoryRanking)
            assert ranking.periods == held_before - 1
        if backend.redis_prefix:
            redis = async_client(redis_url)
            try:
                keys = [k.decode() async for k in redis.scan_iter(f"{backend.redis_prefix}*")]
            finally:
                await redis.aclose()
            assert not [k for k in keys if "{daily/2026-12-01}" in k]
            assert [k for k in keys if "{daily/2026-12-02}" in k]
        again = await asyncio.to_thread(client.blocking_portal.call, app.state.pruner.prune)
        assert again.periods == []  # nothing more to do


async def test_the_cli_prunes_and_leaves_boards_the_catalog_no_longer_defines(
    tmp_path: Path,
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    clock = MovableClock(DAYS[0])
    settings_file = tmp_path / "boards.toml"
    settings_file.write_text(BOARDS_FILE.read_text())
    from tests.helpers import make_settings

    async with AsyncTestClient(
        app=create_app(make_settings(database, tmp_path, actions_file=settings_file), clock=clock)
    ) as client:
        api = Api(client, clock=clock)
        for day in DAYS:
            clock.set(day)
            await api.score("ann", "play")
            await api.score("ann", "evening")
    # The catalog loses the evening board: its scores must not vanish with it.
    text = settings_file.read_text()
    start = text.index("[boards.evening]")
    settings_file.write_text(
        text[:start]
        + text[text.index("[boards.season]") :].replace(
            'boards = ["evening", "season"]', 'boards = ["season"]'
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")} | settings_env(
        database, tmp_path, SCOREBOARD_ACTIONS_FILE=str(settings_file)
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "scoreboard", "prune"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The command runs on the real clock: of 2026-12-01..03, whatever is not today or
    # yesterday in New York (the daily board keeps one closed period) is pruned.
    daily = Board(id="daily", reset="daily", timezone="America/New_York")
    readable = {p.key for p in Timeline(daily).recent(datetime.now(UTC), 2)}
    pruned = sorted({"2026-12-01", "2026-12-02", "2026-12-03"} - readable)
    for key in pruned:
        assert f"daily/{key}" in result.stderr
    assert "evening" not in result.stderr.split("pruned", 1)[1]
    assert set(await rows_of(database, "evening")) != set()  # kept
    assert "board_data_kept" in result.stdout + result.stderr
