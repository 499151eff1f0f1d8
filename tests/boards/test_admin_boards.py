"""Boards changed at runtime through the admin API, on every backend: create, change, retire
and roll over, each audited, each refused with a problem when it would break a board."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from scoreboard.app import create_app
from scoreboard.boards.service import BoardDefinitionError
from scoreboard.config import Settings
from scoreboard.database import create_engine
from scoreboard.tables import admin_audit, board_rollovers
from tests.boards.test_boards_api import BOARDS_FILE
from tests.conftest import Backend
from tests.helpers import Api, MovableClock, bearer, make_token, problem

ADMIN_ID = "boss"
WEEKEND = {
    "reason": "a weekend event",
    "title": "Weekend",
    "reset": "weekly",
    "timezone": "Asia/Tokyo",
    "keepPeriods": 2,
    "actions": ["solo"],
}


def admin() -> dict[str, str]:
    return bearer(make_token(ADMIN_ID, scopes=("scores:admin",)))


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return backend.settings(tmp_path, actions_file=BOARDS_FILE)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    clock = MovableClock()
    async with AsyncTestClient(app=create_app(settings, clock=clock)) as client:
        yield Api(client, clock=clock)


async def call(api: Api, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return await api.client.request(method, path, json=body, headers=admin())


async def boards_listed(api: Api) -> dict[str, dict[str, Any]]:
    """GET /api/boards, by id: each board's definition and status, without the fields that
    move with the clock (``current``, ``readablePeriods``; a rollover shows in
    ``rollovers``)."""
    response = await api.client.get("/api/boards", headers=bearer(api.token("r")))
    assert response.status_code == 200, response.text
    timed = ("current", "readablePeriods")
    return {
        b["id"]: {k: v for k, v in b.items() if k not in timed} for b in response.json()["boards"]
    }


async def rollovers(settings: Settings) -> list[tuple[str, str, str]]:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(board_rollovers))).all()
    finally:
        await engine.dispose()
    return [(r.board_id, r.closed_period, r.opened_period) for r in rows]


async def board_audit(settings: Settings) -> list[dict[str, Any]]:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(admin_audit)
                .where(admin_audit.c.action.like("board_%"))
                .order_by(admin_audit.c.created_at)
            )
            return [{**row._mapping, "details": json.loads(row.details)} for row in rows]
    finally:
        await engine.dispose()


async def test_a_runtime_board_is_created_fed_changed_and_audited(
    api: Api, settings: Settings
) -> None:
    created = await call(api, "PUT", "/api/admin/boards/weekend", WEEKEND)
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["id"], view["source"], view["actions"], view["status"]) == (
        "weekend",
        "admin",
        ["solo"],
        "active",
    )
    assert view["current"]["key"].count("-W") == 1
    done = await api.score("ann", "solo")
    assert [b["board"] for b in done["boards"]] == ["global", "weekend"]
    assert (await api.board("weekend"))["leaderboard"][0]["score"] == 7

    changed = await call(api, "PUT", "/api/admin/boards/weekend", {**WEEKEND, "title": "Wknd"})
    assert changed.status_code == 200
    assert changed.json()["title"] == "Wknd"
    listed = (await api.client.get("/api/boards", headers=bearer(api.token("r")))).json()
    assert {b["id"]: b["title"] for b in listed["boards"]}["weekend"] == "Wknd"
    audit = await board_audit(settings)
    assert [(a["admin_id"], a["action"], a["reason"]) for a in audit] == [
        (ADMIN_ID, "board_create", "a weekend event"),
        (ADMIN_ID, "board_change", "a weekend event"),
    ]
    assert audit[0]["details"]["reset"] == "weekly"
    assert audit[0]["details"]["actions"] == ["solo"]


@pytest.mark.parametrize(
    ("board", "body", "status", "code"),
    [
        ("global", {**WEEKEND}, 409, "board_conflict"),
        ("weekend2", {**WEEKEND, "reset": "fortnightly"}, 422, "invalid_board"),
        ("weekend2", {**WEEKEND, "reset": "0 0 30 2 *"}, 422, "invalid_board"),
        ("weekend2", {**WEEKEND, "timezone": "Mars/Base"}, 422, "invalid_board"),
        ("weekend2", {**WEEKEND, "actions": ["no_such_type"]}, 422, "invalid_board"),
        ("Weekend", {**WEEKEND}, 422, "invalid_board"),
        ("weekend2", {**WEEKEND, "operator": "max"}, 400, "validation_error"),
        ("weekend2", {**WEEKEND, "keepPeriods": 1001}, 400, "validation_error"),
        ("weekend2", {**WEEKEND, "colour": "red"}, 400, "validation_error"),
        ("weekend2", {k: v for k, v in WEEKEND.items() if k != "reason"}, 400, "validation_error"),
    ],
)
async def test_a_board_that_cannot_be_is_refused_and_nothing_changes(
    api: Api, settings: Settings, board: str, body: dict[str, Any], status: int, code: str
) -> None:
    response = await call(api, "PUT", f"/api/admin/boards/{board}", body)
    problem(response, status, code)
    listed = (await api.client.get("/api/boards", headers=bearer(api.token("r")))).json()
    assert "weekend2" not in {b["id"] for b in listed["boards"]}
    assert await board_audit(settings) == []


async def test_a_boards_ranking_rules_never_change(api: Api, settings: Settings) -> None:
    assert (await call(api, "PUT", "/api/admin/boards/weekend", WEEKEND)).status_code == 201
    before = await boards_listed(api)
    for change in ({"operator": "best"}, {"order": "asc"}, {"reset": "daily"}):
        response = await call(api, "PUT", "/api/admin/boards/weekend", {**WEEKEND, **change})
        assert "never change" in problem(response, 409, "board_conflict")["detail"]
    assert await boards_listed(api) == before
    assert [a["action"] for a in await board_audit(settings)] == ["board_create"]


async def test_a_retired_board_takes_no_more_scores_and_its_last_period_stays_readable(
    api: Api, settings: Settings
) -> None:
    await call(api, "PUT", "/api/admin/boards/weekend", WEEKEND)
    await api.score("ann", "solo")
    retired = await call(api, "DELETE", "/api/admin/boards/weekend", {"reason": "event over"})
    assert retired.status_code == 200, retired.text
    assert (retired.json()["status"], retired.json()["current"]) == ("retired", None)
    again = await api.score("ann", "solo")
    assert [b["board"] for b in again["boards"]] == ["global"]
    current = await api.client.get(
        "/api/boards/weekend/leaderboard", headers=bearer(api.token("r"))
    )
    problem(current, 404, "period_not_found")
    last = await api.board("weekend", period="previous")
    assert [(e["userId"], e["score"]) for e in last["leaderboard"]] == [("ann", 7)]
    # Retiring twice changes nothing; an unknown board is a 404.
    assert (await call(api, "DELETE", "/api/admin/boards/weekend", {"reason": "again"})).is_success
    missing = await call(api, "DELETE", "/api/admin/boards/nope", {"reason": "typo"})
    problem(missing, 404, "board_not_found")
    actions = [a["action"] for a in await board_audit(settings)]
    assert actions == ["board_create", "board_retire"]


async def test_a_rollover_closes_the_period_now_and_freezes_it(
    api: Api, settings: Settings
) -> None:
    await api.score("ann", "evening")
    rolled = await call(
        api, "POST", "/api/admin/boards/season/rollover", {"reason": "season 1 over"}
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json() == {"board": "season", "closedPeriod": "1", "period": "2"}
    await api.score("ben", "evening")
    await api.score("ben", "evening")
    current = await api.board("season")
    assert current["period"] == "2"
    assert [(e["userId"], e["score"]) for e in current["leaderboard"]] == [("ben", 10)]
    frozen = await api.board("season", period="1")
    assert [(e["userId"], e["score"]) for e in frozen["leaderboard"]] == [("ann", 5)]
    assert (await api.board("season", period="previous"))["period"] == "1"
    # Any board's period can be ended early: the rest of the day is a new segment.
    early = await call(api, "POST", "/api/admin/boards/daily/rollover", {"reason": "reset bug"})
    assert early.json()["period"] == f"{early.json()['closedPeriod']}.2"
    audit = await board_audit(settings)
    assert [(a["action"], a["details"].get("period")) for a in audit] == [
        ("board_rollover", "2"),
        ("board_rollover", early.json()["period"]),
    ]
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(board_rollovers))).all()
    finally:
        await engine.dispose()
    assert {(r.board_id, r.closed_period, r.opened_period) for r in rows} == {
        ("season", "1", "2"),
        ("daily", early.json()["closedPeriod"], early.json()["period"]),
    }


async def test_board_changes_need_the_admin_scope_and_a_reason(
    api: Api, settings: Settings
) -> None:
    player = bearer(make_token("p", scopes=("scores:write", "leaderboard:read")))
    before = await boards_listed(api)
    for method, path, body in [
        ("PUT", "/api/admin/boards/x", WEEKEND),
        ("DELETE", "/api/admin/boards/daily", {"reason": "because"}),
        ("POST", "/api/admin/boards/daily/rollover", {"reason": "because"}),
    ]:
        response = await api.client.request(method, path, json=body, headers=player)
        assert problem(response, 403, "insufficient_scope")["requiredScope"] == "scores:admin"
        no_reason = await call(api, method, path, {})
        problem(no_reason, 400, "validation_error")
    assert await boards_listed(api) == before  # no board created, changed or retired
    assert await rollovers(settings) == []
    assert await board_audit(settings) == []
    retired = await call(api, "DELETE", "/api/admin/boards/weekly", {"reason": "no more weeks"})
    assert retired.status_code == 200
    after_retiring = await boards_listed(api)
    refused = await call(api, "POST", "/api/admin/boards/weekly/rollover", {"reason": "x-x"})
    problem(refused, 409, "board_conflict")
    assert await boards_listed(api) == after_retiring
    assert await rollovers(settings) == []
    assert [a["action"] for a in await board_audit(settings)] == ["board_retire"]


async def test_a_file_board_that_clashes_with_a_runtime_one_stops_start_up(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    assert (await call(api, "PUT", "/api/admin/boards/weekend", WEEKEND)).status_code == 201
    same = tmp_path / "same.toml"
    same.write_text(
        BOARDS_FILE.read_text()
        + '\n[boards.weekend]\nreset = "weekly"\ntimezone = "Asia/Tokyo"\nkeep_periods = 3\n'
    )
    clashing = tmp_path / "clashing.toml"
    clashing.write_text(BOARDS_FILE.read_text() + '\n[boards.weekend]\nreset = "daily"\n')

    # The same rules: the file now owns the board, and its scores stay where they are.
    async with AsyncTestClient(
        app=create_app(settings.model_copy(update={"actions_file": same}))
    ) as client:
        listed = (await client.get("/api/boards", headers=bearer(make_token("r")))).json()
        weekend = {b["id"]: b for b in listed["boards"]}["weekend"]
        assert (weekend["source"], weekend["keepPeriods"]) == ("file", 3)

    # Other rules: refusing to start beats silently ranking old scores by new rules.
    with pytest.raises(BaseExceptionGroup) as refused:  # the test client's task group
        async with AsyncTestClient(
            app=create_app(settings.model_copy(update={"actions_file": clashing}))
        ):
            pass
    assert refused.group_contains(
        BoardDefinitionError, match="'weekend' is defined in the actions file"
    )


async def test_after_a_rollover_no_instance_writes_into_the_closed_period(
    settings: Settings,
) -> None:
    """Two instances on one database; the second one's clock runs 30 s behind the first's,
    which rolls the season over. Whatever the second one's clock says, its next completion
    lands in the new period (the rollover is in the database before the write)."""
    ahead, behind = MovableClock(), MovableClock()
    behind.move(timedelta(seconds=-30))
    async with (
        AsyncTestClient(app=create_app(settings, clock=ahead)) as first,
        AsyncTestClient(app=create_app(settings, clock=behind)) as second,
    ):
        early = await Api(second, clock=behind).score("ann", "evening")
        assert {b["board"]: b["period"] for b in early["boards"]}["season"] == "1"
        rolled = await first.post(
            "/api/admin/boards/season/rollover", json={"reason": "season over"}, headers=admin()
        )
        assert rolled.json()["period"] == "2"
        late = await Api(second, clock=behind).score("ben", "evening")
        assert {b["board"]: b["period"] for b in late["boards"]}["season"] == "2"
        # Rolled over again from the instance behind: after the last cut, not before it.
        again = await second.post(
            "/api/admin/boards/season/rollover", json={"reason": "season 2 over"}, headers=admin()
        )
        assert again.json() == {"board": "season", "closedPeriod": "2", "period": "3"}
