"""The admin API end to end, on every backend of the shared fixtures: flags, history, adjust, reset,
suspend and unsuspend. Every change must leave an ``admin_audit`` row (read straight from the
database), and only a ``scores:admin`` token may use any of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from scoreboard.app import create_app
from scoreboard.config import Settings
from scoreboard.database import create_engine
from scoreboard.tables import admin_audit, suspensions, user_scores
from tests.conftest import Backend, served_by_redis
from tests.helpers import (
    PEER_HEADER,
    Api,
    MovableClock,
    Peer,
    bearer,
    forge_ticket,
    make_settings,
    make_token,
    new_user,
    now_iso,
    problem,
)

ADMIN_ID = "boss"
PLAYER_IP = "203.0.113.7"
OTHER_SECRET = "other-action-key-that-is-long-enough-9876543210"

# Every admin route, with a body that would be valid for it.
ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/admin/flags", None),
    ("POST", "/api/admin/flags/{flag}/resolve", {"reason": "looked at it"}),
    ("GET", "/api/admin/users/{user}/history", None),
    ("POST", "/api/admin/users/{user}/adjust", {"points": 5, "reason": "goodwill"}),
    ("POST", "/api/admin/users/{user}/reset", {"reason": "cheated"}),
    ("POST", "/api/admin/users/{user}/suspend", {"reason": "cheated"}),
    ("POST", "/api/admin/users/{user}/unsuspend", {"reason": "appeal granted"}),
    ("PUT", "/api/admin/boards/weekend", {"reason": "an event", "reset": "weekly"}),
    ("DELETE", "/api/admin/boards/global", {"reason": "no more"}),
    ("POST", "/api/admin/boards/global/rollover", {"reason": "new season"}),
]
CHANGING_ROUTES = [route for route in ADMIN_ROUTES if route[0] != "GET"]
GLOBAL_ALL = {"board": "global", "period": "all"}  # where adjustments land by default


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Peer]]:
    """The app of the shared fixtures (every backend), reachable from chosen addresses."""
    app = Peer(create_app(settings))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client
        served_by_redis(app)


def admin() -> dict[str, str]:
    return bearer(make_token(ADMIN_ID, scopes=("scores:admin",)))


async def admin_call(
    api: Api, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await api.client.request(method, path, json=body, headers=admin())


async def audit_rows(settings: Settings, target: str) -> list[dict[str, Any]]:
    """The admin_audit rows about a user, oldest first, with ``details`` decoded."""
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(admin_audit)
                .where(admin_audit.c.target_user_id == target)
                .order_by(admin_audit.c.created_at)
            )
            return [{**row._mapping, "details": json.loads(row.details)} for row in rows]
    finally:
        await engine.dispose()


async def stored_score(settings: Settings, user_id: str) -> int | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            score: int | None = await conn.scalar(
                select(user_scores.c.score).where(user_scores.c.user_id == user_id)
            )
            return score
    finally:
        await engine.dispose()


async def suspension_row(settings: Settings, user_id: str) -> dict[str, Any] | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(suspensions).where(suspensions.c.user_id == user_id))
            ).first()
            return dict(row._mapping) if row else None
    finally:
        await engine.dispose()


async def history(api: Api, user_id: str) -> dict[str, Any]:
    response = await admin_call(api, "GET", f"/api/admin/users/{user_id}/history")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def flags(api: Api, **params: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/admin/flags", params={"limit": "500", **params}, headers=admin()
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["flags"]
    return found


async def forged_flag(api: Api, user_id: str) -> dict[str, Any]:
    """One forged ticket is enough for a forged_ticket flag (the rule's limit is 0)."""
    response = await api.complete(user_id, forge_ticket(user_id, action_secret=OTHER_SECRET))
    problem(response, 422, "invalid_action")
    [flag] = await flags(api, userId=user_id, status="all")
    return flag


async def early_flag(api: Api, user_id: str) -> dict[str, Any]:
    """Four completions before notBefore: one more than early_completion allows."""
    # Its window is counted in epoch-aligned 600 s buckets; do not straddle an edge.
    left = 600 - time.time() % 600
    if left < 3:
        await asyncio.sleep(left + 0.05)
    for _ in range(4):
        problem(
            await api.complete(user_id, await api.issue(user_id, "slow")), 422, "action_not_ready"
        )
    [flag] = await flags(api, userId=user_id, rule="early_completion", status="all")
    return flag


def board_of(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {entry["userId"]: entry["score"] for entry in entries}


# --------------------------------------------------------------------------- flags


async def test_flags_are_listed_and_filtered(api: Api) -> None:
    cheat, other = new_user(), new_user()
    forged = await forged_flag(api, cheat)
    early = await early_flag(api, cheat)
    other_forged = await forged_flag(api, other)

    assert forged["rule"] == "forged_ticket"
    assert forged["userId"] == cheat
    assert forged["policy"] == "flag"
    assert forged["evidence"]["code"] == "invalid_action"
    assert forged["evidence"]["limit"] == 0
    assert forged["resolvedAt"] is None
    assert forged["resolvedBy"] is None
    assert forged["resolution"] is None
    datetime.fromisoformat(forged["createdAt"])
    assert early["evidence"]["code"] == "action_not_ready"

    mine = await flags(api, userId=cheat)  # status defaults to "open"
    assert {f["id"] for f in mine} == {forged["id"], early["id"]}
    assert [f["id"] for f in mine] == [early["id"], forged["id"]]  # newest first
    by_rule = await flags(api, rule="forged_ticket")
    assert {forged["id"], other_forged["id"]} <= {f["id"] for f in by_rule}
    assert early["id"] not in {f["id"] for f in by_rule}
    assert all(f["rule"] == "forged_ticket" for f in by_rule)
    assert [f["id"] for f in await flags(api, userId=cheat, rule="early_completion")] == [
        early["id"]
    ]
    assert await flags(api, userId=cheat, rule="no_such_rule") == []
    assert await flags(api, userId=new_user()) == []

    paged = await api.client.get(
        "/api/admin/flags", params={"userId": cheat, "limit": "1", "offset": "1"}, headers=admin()
    )
    assert [f["id"] for f in paged.json()["flags"]] == [forged["id"]]

    for bad in ({"status": "closed"}, {"limit": "0"}, {"limit": "501"}, {"offset": "-1"}):
        response = await api.client.get("/api/admin/flags", params=bad, headers=admin())
        problem(response, 400, "validation_error")


async def test_resolving_a_flag_closes_it_and_is_audited(api: Api, settings: Settings) -> None:
    cheat = new_user()
    flag = await forged_flag(api, cheat)

    response = await admin_call(
        api, "POST", f"/api/admin/flags/{flag['id']}/resolve", {"reason": "test account"}
    )
    assert response.status_code == 200, response.text
    resolved = response.json()
    assert resolved["id"] == flag["id"]
    assert resolved["resolvedBy"] == ADMIN_ID
    assert resolved["resolution"] == "test account"
    assert datetime.fromisoformat(resolved["resolvedAt"]) >= datetime.fromisoformat(
        flag["createdAt"]
    )

    assert await flags(api, userId=cheat) == []  # no longer open
    assert [f["id"] for f in await flags(api, userId=cheat, status="resolved")] == [flag["id"]]
    [shown] = await flags(api, userId=cheat, status="all")
    assert shown == resolved

    [audit] = await audit_rows(settings, cheat)
    assert audit["admin_id"] == ADMIN_ID
    assert audit["action"] == "resolve_flag"
    assert audit["reason"] == "test account"
    assert audit["details"] == {"flagId": flag["id"], "rule": "forged_ticket"}


async def test_resolving_an_unknown_flag_is_not_found(api: Api) -> None:
    response = await admin_call(
        api, "POST", "/api/admin/flags/no-such-flag/resolve", {"reason": "looked at it"}
    )
    problem(response, 404, "not_found")


# --------------------------------------------------------------------------- history


async def test_history_lists_updates_newest_first(api: Api) -> None:
    user = new_user()
    for kind in ("instant", "big", "instant"):
        response = await api.client.post(
            "/api/scores/update",
            json={"actionId": await api.issue(user, kind), "timestamp": now_iso()},
            headers={**bearer(api.token(user)), PEER_HEADER: PLAYER_IP},
        )
        assert response.status_code == 200, response.text

    body = await history(api, user)
    assert body["userId"] == user
    assert body["score"] == 120
    assert body["suspended"] is False
    updates = body["updates"]
    assert [(u["actionType"], u["scoreChange"]) for u in updates] == [
        ("instant", 10),
        ("big", 100),
        ("instant", 10),
    ]
    assert {u["clientIp"] for u in updates} == {PLAYER_IP}
    recorded = [datetime.fromisoformat(u["recordedAt"]) for u in updates]
    assert recorded == sorted(recorded, reverse=True)
    assert len({u["actionId"] for u in updates}) == 3

    page = await api.client.get(
        f"/api/admin/users/{user}/history", params={"limit": 1, "offset": 1}, headers=admin()
    )
    assert [u["id"] for u in page.json()["updates"]] == [updates[1]["id"]]


async def test_history_of_a_user_who_never_scored_is_empty(api: Api) -> None:
    body = await history(api, new_user())
    assert (body["score"], body["suspended"], body["updates"]) == (0, False, [])


# --------------------------------------------------------------------------- adjust / reset


NEGATIVE_DELTA_BUG = (
    "BUG: every negative score change fails with 422 score_would_be_negative, even when the "
    "result stays >= 0. ScoreRepository's upsert inserts the *delta* as the candidate row's "
    "score, and SQLite and PostgreSQL check CHECK (score >= 0) on that candidate row before "
    "ON CONFLICT turns it into an update. Fix: write negative deltas with "
    "UPDATE user_scores SET score = score + :delta ... WHERE user_id = :id RETURNING * "
    "(no row, or the CHECK failing, means score_would_be_negative)"
)


async def test_adjusting_up_moves_the_score_rank_and_board(api: Api, settings: Settings) -> None:
    user, rival = new_user(), new_user()
    await api.score(user)  # 10
    await api.score(rival, "big")  # 100

    up = await admin_call(
        api, "POST", f"/api/admin/users/{user}/adjust", {"points": 150, "reason": "lost update"}
    )
    assert up.status_code == 200, up.text
    assert up.json() == {**GLOBAL_ALL, "userId": user, "newScore": 160, "rank": 1}
    assert board_of(await api.leaderboard()) == {user: 160, rival: 100}
    assert await stored_score(settings, user) == 160

    body = await history(api, user)
    assert body["score"] == 160
    latest = body["updates"][0]
    assert (latest["actionType"], latest["scoreChange"], latest["clientIp"]) == (
        "admin_adjust",
        150,
        None,
    )
    assert [u["actionType"] for u in body["updates"]] == ["admin_adjust", "instant"]
    [audit] = await audit_rows(settings, user)
    assert (audit["admin_id"], audit["action"], audit["reason"]) == (
        ADMIN_ID,
        "adjust",
        "lost update",
    )
    assert audit["details"] == {**GLOBAL_ALL, "points": 150, "newScore": 160}


async def test_an_adjusted_user_keeps_scoring_from_the_new_score(api: Api) -> None:
    user = new_user()
    response = await admin_call(
        api, "POST", f"/api/admin/users/{user}/adjust", {"points": 25, "reason": "prize"}
    )
    assert response.json() == {**GLOBAL_ALL, "userId": user, "newScore": 25, "rank": 1}
    assert (await api.score(user))["newScore"] == 35


async def test_adjusting_down_moves_the_score_rank_and_board(api: Api, settings: Settings) -> None:
    user, rival = new_user(), new_user()
    await api.score(user, "big")
    await api.score(user, "big")  # 200
    await api.score(rival, "big")  # 100

    down = await admin_call(
        api, "POST", f"/api/admin/users/{user}/adjust", {"points": -130, "reason": "overpaid"}
    )
    assert down.status_code == 200, down.text
    assert down.json() == {**GLOBAL_ALL, "userId": user, "newScore": 70, "rank": 2}
    assert board_of(await api.leaderboard()) == {user: 70, rival: 100}
    assert await stored_score(settings, user) == 70

    latest = (await history(api, user))["updates"][0]
    assert (latest["actionType"], latest["scoreChange"]) == ("admin_adjust", -130)
    [audit] = await audit_rows(settings, user)
    assert (audit["admin_id"], audit["action"], audit["reason"]) == (ADMIN_ID, "adjust", "overpaid")
    assert audit["details"] == {**GLOBAL_ALL, "points": -130, "newScore": 70}


async def test_adjusting_below_zero_is_refused_and_changes_nothing(
    api: Api, settings: Settings
) -> None:
    user = new_user()
    await api.score(user)  # 10
    before = await history(api, user)

    response = await admin_call(
        api, "POST", f"/api/admin/users/{user}/adjust", {"points": -11, "reason": "too much"}
    )
    problem(response, 422, "score_would_be_negative")

    assert await history(api, user) == before
    assert board_of(await api.leaderboard()) == {user: 10}
    assert await stored_score(settings, user) == 10
    assert await audit_rows(settings, user) == []


async def test_reset_sets_the_score_to_zero(api: Api, settings: Settings) -> None:
    user = new_user()
    await api.score(user, "big")
    await api.score(user)  # 110

    response = await admin_call(
        api, "POST", f"/api/admin/users/{user}/reset", {"reason": "bot farm"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["newScore"] == 0
    assert response.json()["userId"] == user

    body = await history(api, user)
    assert body["score"] == 0
    assert (body["updates"][0]["actionType"], body["updates"][0]["scoreChange"]) == (
        "admin_reset",
        -110,
    )
    assert body["updates"][0]["boards"] == {"global": "all"}  # where the reset landed
    assert board_of(await api.leaderboard()).get(user, 0) == 0
    assert await stored_score(settings, user) == 0
    [audit] = await audit_rows(settings, user)
    assert (audit["admin_id"], audit["action"], audit["reason"]) == (ADMIN_ID, "reset", "bot farm")
    assert audit["details"] == {**GLOBAL_ALL, "previousScore": 110, "newScore": 0}

    # Scoring starts again from zero.
    assert (await api.score(user))["newScore"] == 10


async def test_resetting_a_user_who_never_scored_does_not_invent_one(
    api: Api, settings: Settings
) -> None:
    ghost = new_user()
    response = await admin_call(api, "POST", f"/api/admin/users/{ghost}/reset", {"reason": "typo"})
    body = problem(response, 404, "not_found")
    assert body["detail"] == f"user {ghost} has no score on board 'global'"
    assert ghost not in board_of(await api.leaderboard())
    assert await stored_score(settings, ghost) is None
    assert await audit_rows(settings, ghost) == []  # a refused change leaves no audit row


# --------------------------------------------------------------------------- suspend


async def test_a_suspended_user_cannot_score_until_unsuspended(
    api: Api, settings: Settings
) -> None:
    user = new_user()
    await api.score(user)  # 10

    response = await admin_call(
        api, "POST", f"/api/admin/users/{user}/suspend", {"reason": "scripted play"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"userId": user, "suspended": True, "changed": True}
    again = await admin_call(
        api, "POST", f"/api/admin/users/{user}/suspend", {"reason": "scripted play"}
    )
    assert again.json() == {"userId": user, "suspended": True, "changed": False}
    assert (await history(api, user))["suspended"] is True
    row = await suspension_row(settings, user)
    assert row is not None
    assert (row["reason"], row["suspended_by"]) == ("scripted play", ADMIN_ID)

    ticket = await api.issue(user)
    problem(await api.complete(user, ticket), 403, "user_suspended")
    assert board_of(await api.leaderboard()) == {user: 10}
    assert len((await history(api, user))["updates"]) == 1
    # Reading still works.
    me = await api.client.get("/api/leaderboard/me", headers=bearer(api.token(user)))
    assert me.status_code == 200
    assert me.json()["score"] == 10
    board = await api.client.get("/api/leaderboard", headers=bearer(api.token(user)))
    assert board.status_code == 200

    lifted = await admin_call(
        api, "POST", f"/api/admin/users/{user}/unsuspend", {"reason": "appeal granted"}
    )
    assert lifted.status_code == 200, lifted.text
    assert lifted.json() == {"userId": user, "suspended": False, "changed": True}
    assert (await history(api, user))["suspended"] is False
    assert await suspension_row(settings, user) is None

    # The refused ticket was not used up: it still counts once the suspension is lifted.
    completed = await api.complete(user, ticket)
    assert completed.status_code == 200, completed.text
    assert completed.json()["newScore"] == 20
    assert (await api.score(user))["newScore"] == 30

    audits = await audit_rows(settings, user)
    assert [(a["admin_id"], a["action"], a["reason"], a["details"]) for a in audits] == [
        (ADMIN_ID, "suspend", "scripted play", {"changed": True}),
        (ADMIN_ID, "suspend", "scripted play", {"changed": False}),
        (ADMIN_ID, "unsuspend", "appeal granted", {"changed": True}),
    ]


# --------------------------------------------------------------------------- reasons


@pytest.mark.parametrize(("method", "template", "body"), CHANGING_ROUTES)
async def test_changes_need_a_reason(
    api: Api, settings: Settings, method: str, template: str, body: dict[str, Any]
) -> None:
    user = new_user()
    await api.score(user)
    flag = await forged_flag(api, user)
    path = template.format(user=user, flag=flag["id"])
    without = {k: v for k, v in body.items() if k != "reason"}

    for reason in (None, "", "ok", "x" * 501, 42):
        sent = without if reason is None else {**without, "reason": reason}
        problem(await admin_call(api, method, path, sent), 400, "validation_error")
    problem(await admin_call(api, method, path), 400, "validation_error")  # no body at all

    assert await audit_rows(settings, user) == []
    assert board_of(await api.leaderboard()) == {user: 10}
    assert (await history(api, user))["suspended"] is False
    assert [f["id"] for f in await flags(api, userId=user)] == [flag["id"]]


async def test_a_blank_reason_is_refused(api: Api, settings: Settings) -> None:
    user = new_user()
    response = await admin_call(api, "POST", f"/api/admin/users/{user}/suspend", {"reason": "   "})
    problem(response, 400, "validation_error")
    assert await audit_rows(settings, user) == []


async def test_unknown_fields_are_refused(api: Api, settings: Settings) -> None:
    user = new_user()
    response = await admin_call(
        api,
        "POST",
        f"/api/admin/users/{user}/adjust",
        {"points": 5, "reason": "goodwill", "userId": "someone-else"},
    )
    problem(response, 400, "validation_error")
    assert await audit_rows(settings, user) == []


@pytest.mark.parametrize("path", ["/api/admin/flags", "/api/admin/users/someone/history"])
async def test_a_huge_offset_is_a_validation_error(api: Api, path: str) -> None:
    response = await api.client.get(path, params={"offset": str(10**20)}, headers=admin())
    problem(response, 400, "validation_error")


# --------------------------------------------------------------------------- scopes


@pytest.mark.parametrize(("method", "template", "body"), ADMIN_ROUTES)
async def test_a_user_token_is_refused_on_every_admin_route(
    api: Api, settings: Settings, method: str, template: str, body: dict[str, Any] | None
) -> None:
    user = new_user()
    await api.score(user)
    flag = await forged_flag(api, user)
    path = template.format(user=user, flag=flag["id"])

    for token in (
        make_token(user),  # leaderboard:read scores:write
        make_token("svc", scopes=("scores:write", "actions:issue", "leaderboard:read")),
    ):
        response = await api.client.request(method, path, json=body, headers=bearer(token))
        refused = problem(response, 403, "insufficient_scope")
        assert refused["requiredScope"] == "scores:admin"

    anonymous = await api.client.request(method, path, json=body)
    problem(anonymous, 401, "invalid_token")
    forged = make_token(ADMIN_ID, scopes=("scores:admin",), secret="x" * 48)
    problem(
        await api.client.request(method, path, json=body, headers=bearer(forged)),
        401,
        "invalid_token",
    )

    # Nothing changed.
    assert await audit_rows(settings, user) == []
    assert board_of(await api.leaderboard()) == {user: 10}
    assert (await history(api, user))["suspended"] is False
    assert [f["id"] for f in await flags(api, userId=user)] == [flag["id"]]


def test_the_route_list_covers_every_admin_route(tmp_path: Path) -> None:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db'}", tmp_path))
    served = {
        (method, route.path)
        for route in app.routes
        if route.path.startswith("/api/admin")
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS")
    }
    listed = {
        (
            method,
            template.replace("{flag}", "{flag_id:str}")
            .replace("{user}", "{user_id:str}")
            .replace("/boards/weekend", "/boards/{board:str}")
            .replace("/boards/global", "/boards/{board:str}"),
        )
        for method, template, _ in ADMIN_ROUTES
    }
    assert served == listed


SEASONS = """
default = "instant"

[boards.global]
title = "All time"

[boards.season]
title = "The season (all time too)"

[boards.weekly]
title = "This week"
reset = "weekly"

[types.instant]
points = 10
ttl = 60
boards = ["global", "season", "weekly"]

[types.seasonal]
points = 30
ttl = 60
boards = ["season"]
"""


async def test_a_reset_takes_exactly_its_boards_current_period(
    backend: Backend, tmp_path: Path
) -> None:
    """A user with rows on two all-time boards (the same period key) and in two weeks of a
    weekly board: resetting one board zeroes that board's current period only, and reports
    what that row held; an adjustment keeps the user's display name. Guards against the
    reset's locking read losing its board, period or user condition (it would read, and take
    away, another row's score; a rival scored first, so their rows come first), and against
    an adjustment renaming the user to their id."""
    catalog = tmp_path / "seasons.toml"
    catalog.write_text(SEASONS)
    clock = MovableClock(datetime(2026, 11, 30, 12, tzinfo=UTC))  # a Monday
    settings = backend.settings(tmp_path, actions_file=catalog)
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app=app) as client:
        api = Api(client, clock=clock)
        rival, user = new_user(), new_user()
        for _ in range(4):
            await api.score(rival, "seasonal")  # season 120: scored first
        await api.score(rival)
        await api.score(user)  # global 10, season 10, week 49: 10
        clock.move(timedelta(days=7))
        await api.score(rival)
        await api.score(user)
        await api.score(user)
        await api.score(user, "seasonal")  # global 30, season 60, week 50: 20

        async def reset(board: str) -> int:
            path = f"/api/admin/users/{user}/reset"
            response = await admin_call(api, "POST", path, {"reason": "cheat", "board": board})
            assert response.status_code == 200, response.text
            assert response.json()["newScore"] == 0
            previous: int = (await audit_rows(settings, user))[-1]["details"]["previousScore"]
            return previous

        goodwill = {"points": 5, "reason": "goodwill"}  # an adjustment up keeps the name too
        adjusted = await admin_call(api, "POST", f"/api/admin/users/{user}/adjust", goodwill)
        assert adjusted.status_code == 200, adjusted.text
        assert await reset("weekly") == 20
        assert await reset("season") == 60
        overall = (await api.board("global"))["leaderboard"]
        assert board_of(overall) == {rival: 20, user: 35}
        assert {e["userId"]: e["username"] for e in overall}[user] == f"name-{user}"
        season = (await api.board("season"))["leaderboard"]
        assert board_of(season) == {rival: 140, user: 0}
        assert {e["userId"]: e["username"] for e in season}[user] == f"name-{user}"
        assert board_of((await api.board("weekly"))["leaderboard"]) == {rival: 10, user: 0}
        last_week = await api.board("weekly", period="2026-W49")
        assert board_of(last_week["leaderboard"]) == {rival: 10, user: 10}
