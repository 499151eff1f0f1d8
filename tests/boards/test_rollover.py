"""Periods roll over by the clock alone. With the service's clock moved across a day (in a
time zone with daylight saving time), an ISO week, a month and a cron boundary: scores land
in the right period, the closed period is frozen, and a live client following the board
gets ``board_reset`` then the new, empty board over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from scoreboard.app import create_app
from scoreboard.config import Settings
from tests.boards.test_boards_api import BOARDS_FILE
from tests.helpers import Api, MovableClock, make_settings, make_token
from tests.server import served

pytestmark = pytest.mark.slow


async def next_of(ws: ClientConnection, kinds: set[str], wait: float = 10) -> dict[str, Any]:
    """The next event of one of these types, skipping others (personal score updates)."""
    async with asyncio.timeout(wait):
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] in kinds:
                return event


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path, actions_file=BOARDS_FILE
    )


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def service(settings: Settings, clock: MovableClock) -> AsyncIterator[tuple[str, Api]]:
    app = create_app(settings, clock=clock)
    async with served(app, settings) as url, httpx.AsyncClient(base_url=url) as client:
        yield url, Api(client, clock=clock)


async def score(api: Api, user: str, board: str, value: int) -> dict[str, Any]:
    """Score on ``board`` with the action that feeds it."""
    if board == "speedrun":
        response = await api.complete(user, await api.issue_for(user, "run", value))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
    return await api.score(user, "evening" if board == "evening" else "play")


@pytest.mark.parametrize(
    ("board", "before", "old", "new"),
    [
        # New York's day ends at 04:00 UTC in summer time (23-hour day on 2026-03-08).
        ("daily", datetime(2026, 3, 9, 3, 59, 57, tzinfo=UTC), "2026-03-08", "2026-03-09"),
        # Berlin: Sunday 23:59:57 CET, then Monday of ISO week 50.
        ("weekly", datetime(2026, 12, 6, 22, 59, 57, tzinfo=UTC), "2026-W49", "2026-W50"),
        # Berlin: the last seconds of November.
        ("speedrun", datetime(2026, 11, 30, 22, 59, 57, tzinfo=UTC), "2026-11", "2026-12"),
        # Berlin, "0 18 * * *", on the day clocks go forward: 18:00 CEST is 16:00 UTC.
        (
            "evening",
            datetime(2026, 3, 29, 15, 59, 57, tzinfo=UTC),
            "2026-03-28T17:00Z",
            "2026-03-29T16:00Z",
        ),
    ],
)
async def test_a_boundary_closes_the_period_and_live_clients_see_the_reset(
    service: tuple[str, Api], clock: MovableClock, board: str, before: datetime, old: str, new: str
) -> None:
    url, api = service
    clock.set(before)
    ws_url = url.replace("http://", "ws://") + f"/ws/leaderboard?board={board}"
    headers = {"Authorization": f"Bearer {make_token('watcher')}"}
    async with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        hello = await next_of(ws, {"connection_success"})
        assert (hello["board"], hello["period"]) == (board, old)
        first = await score(api, "ann", board, 500)
        assert {b["board"]: b["period"] for b in first["boards"]}[board] == old
        update = await next_of(ws, {"leaderboard_update"})
        assert [e["userId"] for e in update["leaderboard"]] == ["ann"]

        clock.move(timedelta(seconds=5))  # across the boundary; nothing runs at it
        reset = await next_of(ws, {"board_reset", "leaderboard_update"})
        assert reset == {
            "type": "board_reset",
            "board": board,
            "period": new,
            "previousPeriod": old,
        }
        fresh = await next_of(ws, {"leaderboard_update"})
        assert (fresh["period"], fresh["leaderboard"]) == (new, [])
        assert fresh["version"] > update["version"]

        second = await score(api, "ben", board, 400)
        assert {b["board"]: b["period"] for b in second["boards"]}[board] == new
        update = await next_of(ws, {"leaderboard_update"})
        assert (update["period"], [e["userId"] for e in update["leaderboard"]]) == (new, ["ben"])

    current = await api.board(board)
    assert (current["period"], [e["userId"] for e in current["leaderboard"]]) == (new, ["ben"])
    frozen = await api.board(board, period="previous")
    assert (frozen["period"], [(e["userId"]) for e in frozen["leaderboard"]]) == (old, ["ann"])
    assert await api.board(board, period=old) == frozen


async def test_daylight_saving_time_neither_loses_nor_doubles_an_hour(
    service: tuple[str, Api], clock: MovableClock
) -> None:
    _, api = service
    # New York, 2026-03-08: 01:59 EST is followed by 03:00 EDT. 2026-11-01: 01:00-01:59
    # happens twice. Each day is one period, 23 and 25 hours long.
    for day, instants, hours in (
        ("2026-03-08", ("06:59:00", "07:01:00", "05:00:00", "03:59:59"), 23),
        ("2026-11-01", ("05:30:00", "06:30:00", "04:00:00", "03:59:59"), 25),
    ):
        for n, instant in enumerate(instants):
            clock.set(datetime.fromisoformat(f"{day}T{instant}+00:00"))
            result = await api.score(f"{day}-{n}", "play")
            daily = {b["board"]: b["period"] for b in result["boards"]}["daily"]
            previous_day = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
            assert daily == (day if n < 3 else previous_day), (day, instant)
        clock.set(datetime.fromisoformat(f"{day}T12:00:00+00:00"))
        listed = (
            await api.client.get(
                "/api/boards", headers={"Authorization": f"Bearer {api.token('r')}"}
            )
        ).json()
        period = {b["id"]: b for b in listed["boards"]}["daily"]["current"]
        length = datetime.fromisoformat(period["end"]) - datetime.fromisoformat(period["start"])
        assert (period["key"], length) == (day, timedelta(hours=hours))
        page = await api.board("daily")
        assert sorted(e["userId"] for e in page["leaderboard"]) == [f"{day}-{n}" for n in range(3)]
