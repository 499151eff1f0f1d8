"""Many boards through the public API, on SQLite, PostgreSQL and the production shape: one
completion on several boards, paging, friends views, standings, values for best/latest
boards, and the refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from scoreboard.boards.periods import Timeline
from scoreboard.boards.rules import Board
from tests.conftest import Backend
from tests.helpers import (
    REPLAY_REFUSALS,
    Api,
    MovableClock,
    bearer,
    history_of,
    make_token,
    new_user,
    problem,
    problem_by_status,
)

BOARDS_FILE = Path(__file__).parent / "boards.toml"


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def api(backend: Backend, tmp_path: Path, clock: MovableClock) -> AsyncIterator[Api]:
    settings = backend.settings(tmp_path, actions_file=BOARDS_FILE)
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        yield Api(client, clock=clock)


def key_of(reset: str, timezone: str, clock: MovableClock) -> str:
    return Timeline(Board(id="b", reset=reset, timezone=timezone)).at(clock()).key


async def get(api: Api, path: str, **params: Any) -> Any:
    return await api.client.get(path, params=params, headers=bearer(api.token("reader")))


async def test_one_completion_counts_on_every_board_it_feeds(api: Api, clock: MovableClock) -> None:
    alice, bob = new_user(), new_user()
    first = await api.score(alice, "play")
    week = key_of("weekly", "Europe/Berlin", clock)
    day = key_of("daily", "America/New_York", clock)
    assert first == {
        "success": True,
        "newScore": 10,
        "rank": 1,
        "boards": [
            {"board": "global", "period": "all", "score": 10, "rank": 1},
            {"board": "weekly", "period": week, "score": 10, "rank": 1},
            {"board": "daily", "period": day, "score": 10, "rank": 1},
        ],
    }
    await api.score(bob, "big")
    for board, period in (("global", "all"), ("weekly", week), ("daily", day)):
        page = await api.board(board)
        assert (page["board"], page["period"], page["total"]) == (board, period, 2)
        assert [(e["userId"], e["score"], e["rank"]) for e in page["leaderboard"]] == [
            (bob, 100, 1),
            (alice, 10, 2),
        ]
    # A board the action does not feed saw nothing; the spec's route is board global.
    assert (await api.board("evening"))["total"] == 0
    assert [e["userId"] for e in await api.leaderboard()] == [bob, alice]


async def test_the_boards_list_has_rules_and_current_periods(api: Api, clock: MovableClock) -> None:
    response = await get(api, "/api/boards")
    assert response.status_code == 200
    boards = {b["id"]: b for b in response.json()["boards"]}
    assert set(boards) == {
        "global",
        "weekly",
        "daily",
        "evening",
        "season",
        "high",
        "speedrun",
        "last",
    }
    weekly = boards["weekly"]
    period = Timeline(Board(id="weekly", reset="weekly", timezone="Europe/Berlin")).at(clock())
    assert weekly["current"]["key"] == period.key
    assert period.start is not None
    assert weekly["current"]["start"].startswith(period.start.strftime("%Y-%m-%dT%H:%M"))
    assert (weekly["reset"], weekly["timezone"], weekly["keepPeriods"]) == (
        "weekly",
        "Europe/Berlin",
        2,
    )
    assert weekly["actions"] == ["play", "big"]
    assert boards["global"]["current"] == {"key": "all", "start": None, "end": None}
    assert boards["speedrun"]["order"] == "asc"
    assert boards["season"]["current"]["key"] == "1"
    assert {b["status"] for b in boards.values()} == {"active"}


async def test_paging_goes_through_the_whole_board_with_ranks_and_total(api: Api) -> None:
    users = [f"p{i:02d}" for i in range(12)]
    for i, user in enumerate(users):
        for _ in range(1 + i // 2):  # pairs tie: 10, 10, 20, 20, ...
            await api.score(user, "play")
    everyone = (await api.board("global", limit=100))["leaderboard"]
    assert [e["rank"] for e in everyone] == [1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11]
    page = await api.board("global", limit=5, offset=5)
    assert page["total"] == 12
    assert page["leaderboard"] == everyone[5:10]
    assert (await api.board("global", limit=5, offset=12))["leaderboard"] == []
    # ETag and 304 work on board pages too.
    first = await get(api, "/api/boards/global/leaderboard", limit=5)
    again = await api.client.get(
        "/api/boards/global/leaderboard",
        params={"limit": 5},
        headers={**bearer(api.token("reader")), "If-None-Match": first.headers["etag"]},
    )
    assert again.status_code == 304


async def test_a_friends_view_has_just_those_users_with_their_ranks_on_the_whole_board(
    api: Api,
) -> None:
    for user, times in (("ann", 3), ("ben", 1), ("cat", 2), ("dan", 4)):
        for _ in range(times):
            await api.score(user, "play")
    page = await api.board("global", users="ben,ann,nobody,ben")
    assert page["total"] == 4
    assert [(e["userId"], e["rank"]) for e in page["leaderboard"]] == [("ann", 2), ("ben", 4)]
    too_many = ",".join(f"u{i}" for i in range(101))
    for users in (too_many, "a,,b", "has space"):
        response = await get(api, "/api/boards/global/leaderboard", users=users)
        problem(response, 400, "validation_error")


async def test_my_standing_has_a_radius_and_a_percentile(api: Api) -> None:
    for i in range(10):
        for _ in range(i + 1):
            await api.score(f"s{i}", "play")
    response = await api.client.get(
        "/api/boards/global/me", params={"radius": 3}, headers=bearer(api.token("s4"))
    )
    assert response.status_code == 200
    me = response.json()
    assert (me["board"], me["period"], me["score"], me["rank"], me["total"]) == (
        "global",
        "all",
        50,
        6,
        10,
    )
    assert me["percentile"] == 50.0  # s4 and the four below it: 5 of 10 are not better
    assert [e["userId"] for e in me["above"]] == ["s7", "s6", "s5"]
    assert [e["userId"] for e in me["below"]] == ["s3", "s2", "s1"]
    newcomer = await api.client.get("/api/boards/daily/me", headers=bearer(api.token("new")))
    assert newcomer.json()["rank"] is None
    assert newcomer.json()["percentile"] is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # refused before storage
@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/boards/nope/leaderboard", {}, 404, "board_not_found"),
        ("/api/boards/nope/me", {}, 404, "board_not_found"),
        ("/api/boards/daily/leaderboard", {"period": "2020-01-01"}, 404, "period_not_found"),
        ("/api/boards/global/leaderboard", {"period": "previous"}, 404, "period_not_found"),
        ("/api/boards/global/leaderboard", {"limit": 0}, 400, "validation_error"),
        ("/api/boards/global/leaderboard", {"limit": 101}, 400, "validation_error"),
        ("/api/boards/global/leaderboard", {"offset": -1}, 400, "validation_error"),
        ("/api/boards/global/leaderboard", {"period": "x" * 81}, 400, "validation_error"),
        ("/api/boards/global/me", {"radius": 26}, 400, "validation_error"),
        (f"/api/boards/{'b' * 65}/leaderboard", {}, 400, "validation_error"),
    ],
)
async def test_bad_boards_periods_and_parameters_are_problems(
    api: Api, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    response = await get(api, path, **params)
    problem(response, status, code)


async def test_best_and_latest_boards_rank_the_value_a_trusted_backend_sent(api: Api) -> None:
    runs = {"ann": [500, 300, 900], "ben": [400, 400], "cat": [700]}
    for user, values in runs.items():
        for value in values:
            response = await api.complete(user, await api.issue_for(user, "run", value))
            assert response.status_code == 200, response.text
    high = (await api.board("high"))["leaderboard"]
    assert [(e["userId"], e["score"]) for e in high] == [("ann", 900), ("cat", 700), ("ben", 400)]
    fastest = (await api.board("speedrun"))["leaderboard"]
    assert [(e["userId"], e["score"], e["rank"]) for e in fastest] == [
        ("ann", 300, 1),
        ("ben", 400, 2),
        ("cat", 700, 3),
    ]
    last = (await api.board("last"))["leaderboard"]
    assert [(e["userId"], e["score"]) for e in last] == [("ann", 900), ("cat", 700), ("ben", 400)]
    # The sum board got the points, not the values: 1 point per run.
    total = {e["userId"]: e["score"] for e in (await api.board("global"))["leaderboard"]}
    assert total == {"ann": 3, "ben": 2, "cat": 1}


async def test_the_audit_row_keeps_the_value_and_every_board_and_period_it_fed(
    api: Api, clock: MovableClock
) -> None:
    """Guards against the score writer dropping the audit row's ``value`` or ``boards``, or
    writing ``boards`` as anything but the JSON map board -> period (the admin history, the
    cache's drift check and a reset read it back)."""
    for value in (500, 300):
        response = await api.complete("ann", await api.issue_for("ann", "run", value))
        assert response.status_code == 200, response.text
    await api.score("ann", "play")
    updates = (await history_of(api, "ann"))["updates"]
    week = key_of("weekly", "Europe/Berlin", clock)
    day = key_of("daily", "America/New_York", clock)
    month = key_of("monthly", "Europe/Berlin", clock)
    run_boards = {"global": "all", "high": "all", "speedrun": month, "last": "all"}
    assert [(u["actionType"], u["value"], u["boards"]) for u in updates] == [
        ("play", None, {"global": "all", "weekly": week, "daily": day}),
        ("run", 300, run_boards),
        ("run", 500, run_boards),
    ]


async def test_a_value_comes_only_from_a_trusted_backend_and_only_where_it_is_ranked(
    api: Api,
) -> None:
    user_token = bearer(api.token("eve"))
    backend = bearer(make_token("svc", scopes=("actions:issue",)))
    cases = [
        (user_token, {"type": "run", "value": 1}, 403, "insufficient_scope"),
        (user_token, {"type": "run"}, 422, "invalid_value"),
        (backend, {"type": "run", "userId": "eve"}, 422, "invalid_value"),
        (backend, {"type": "play", "userId": "eve", "value": 5}, 422, "invalid_value"),
        (backend, {"type": "run", "userId": "eve", "value": -1}, 400, "validation_error"),
        (backend, {"type": "run", "userId": "eve", "value": 2**53}, 400, "validation_error"),
        (backend, {"type": "run", "userId": "eve", "value": 1.5}, 400, "validation_error"),
    ]
    for headers, body, status, code in cases:
        response = await api.client.post("/api/actions", json=body, headers=headers)
        problem(response, status, code)
    issued = await api.client.post(
        "/api/actions", json={"type": "run", "userId": "eve", "value": 42}, headers=backend
    )
    assert issued.json()["value"] == 42
    assert issued.json()["boards"] == ["global", "high", "speedrun", "last"]
    assert (await api.board("high"))["total"] == 0  # issuing wrote nothing


async def test_parallel_replays_of_a_ticket_feeding_three_boards_score_once_on_each(
    api: Api,
) -> None:
    user = new_user()
    action = await api.issue(user, "play")
    replies = await asyncio.gather(*(api.complete(user, action) for _ in range(50)))
    statuses = [r.status_code for r in replies]
    assert statuses.count(200) == 1
    # The others are replays (409), or refused earlier by the velocity rule (429).
    for reply in replies:
        if reply.status_code != 200:
            problem_by_status(reply, REPLAY_REFUSALS)
    assert 409 in statuses
    for board in ("global", "weekly", "daily"):
        page = await api.board(board)
        assert [(e["userId"], e["score"]) for e in page["leaderboard"]] == [(user, 10)]
