"""Velocity rules, refusal rules, flags, suspensions and rate limits, attacked the way a cheater
would: a scripted player, a replayer, a forger, an impatient client and a token guesser. The
rule settings are overridden per test (``abuse_rules``) so the limits are small.

The last section checks the hardening that every response shares: security headers, CORS and
the optional OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from pydantic import ValidationError
from sqlalchemy import select

from scoreboard.app import create_app
from scoreboard.config import Settings
from scoreboard.database import create_engine
from scoreboard.tables import abuse_flags, score_updates, suspensions
from tests.conftest import served_by_redis
from tests.helpers import (
    PEER_HEADER,
    REPLAY_REFUSALS,
    Api,
    Peer,
    bearer,
    forge_ticket,
    make_settings,
    make_token,
    new_user,
    now_iso,
    problem_by_status,
    settings_env,
)
from tests.helpers import problem as problem  # also imported from here by other test files
from tests.server import ServerProcess

OTHER_SECRET = "other-action-key-that-is-long-enough-9876543210"
WRONG_JWT_SECRET = "wrong-jwt-key-that-is-long-enough-9876543210"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def unique_ip() -> str:
    """An address no other test uses (windows may live in a shared Redis)."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}::{uuid.uuid4().hex[:4]}"


async def clear_of_window_edges(*windows: float, margin: float = 5.0) -> None:
    """The limits library counts sliding windows in epoch-aligned buckets and forgives most
    of a burst once a bucket edge passes. A test that counts exactly must not straddle an
    edge: when one is less than ``margin`` seconds away, wait for it to pass."""
    waits = [w - time.time() % w for w in windows]
    wait = max((left for left in waits if left < margin), default=0.0)
    if wait:
        await asyncio.sleep(wait + 0.05)


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Start]:
    """Start the service of the shared fixtures (every backend) with some settings changed."""
    apps: list[Peer] = []
    async with AsyncExitStack() as stack:

        async def started(**overrides: Any) -> Api:
            values = settings.model_dump(exclude={"database_url", "data_dir"}) | overrides
            tuned = make_settings(settings.resolved_database_url, settings.data_dir, **values)
            apps.append(Peer(create_app(tuned)))
            api = Api(await stack.enter_async_context(AsyncTestClient(app=apps[-1])))
            await clear_of_window_edges(60, 600)  # the default windows, and the limits'
            return api

        yield started
        for app in apps:
            served_by_redis(app)


def admin() -> dict[str, str]:
    return bearer(make_token("boss", scopes=("scores:admin",)))


async def flags(api: Api, user_id: str, rule: str | None = None) -> list[dict[str, Any]]:
    """A user's flags, open or not, as the admin API shows them."""
    params = {"userId": user_id, "status": "all", "limit": "500"}
    if rule:
        params["rule"] = rule
    response = await api.client.get("/api/admin/flags", params=params, headers=admin())
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["flags"]
    return found


async def flag_rows(settings: Settings, **where: str | None) -> list[dict[str, Any]]:
    """abuse_flags rows straight from the database, ``evidence`` decoded."""
    engine = create_engine(settings.resolved_database_url)
    try:
        query = select(abuse_flags).order_by(abuse_flags.c.created_at)
        for column, value in where.items():
            query = query.where(abuse_flags.c[column] == value)
        async with engine.connect() as conn:
            rows = await conn.execute(query)
            return [{**row._mapping, "evidence": json.loads(row.evidence)} for row in rows]
    finally:
        await engine.dispose()


async def update_count(settings: Settings, user_id: str) -> int:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(score_updates.c.id).where(score_updates.c.user_id == user_id)
            )
            return len(rows.all())
    finally:
        await engine.dispose()


async def suspended_by(settings: Settings, user_id: str) -> str | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            by: str | None = await conn.scalar(
                select(suspensions.c.suspended_by).where(suspensions.c.user_id == user_id)
            )
            return by
    finally:
        await engine.dispose()


async def history(api: Api, user_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/admin/users/{user_id}/history", headers=admin())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def scores(board: list[dict[str, Any]]) -> dict[str, int]:
    return {entry["userId"]: entry["score"] for entry in board}


async def score_n(api: Api, user_id: str, n: int, action_type: str | None = None) -> None:
    for _ in range(n):
        await api.score(user_id, action_type)


# --------------------------------------------------------------------------- velocity


async def test_a_scripted_player_is_flagged_and_a_human_is_not(
    start: Start, settings: Settings
) -> None:
    api = await start(abuse_rules={"actions_per_minute": {"limit": 5, "policy": "flag"}})
    bot, human = new_user(), new_user()

    await score_n(api, human, 3)  # a few actions: nowhere near the limit
    for _ in range(12):  # twelve completions in well under a second
        await api.score(bot)  # "flag" accepts every one of them

    assert scores(await api.leaderboard()) == {bot: 120, human: 30}
    [flag] = await flags(api, bot)
    assert flag["rule"] == "actions_per_minute"
    assert flag["policy"] == "flag"
    assert flag["userId"] == bot
    assert flag["resolvedAt"] is None
    assert flag["evidence"] == {"points": 10, "limit": 5, "windowSeconds": 60}
    [row] = await flag_rows(settings, user_id=bot)
    assert (row["rule"], row["policy"], row["evidence"]) == (
        "actions_per_minute",
        "flag",
        {"points": 10, "limit": 5, "windowSeconds": 60},
    )

    assert await flags(api, human) == []
    assert await flag_rows(settings, user_id=human) == []


async def test_block_refuses_a_scripted_player_after_the_limit(
    start: Start, settings: Settings
) -> None:
    api = await start(abuse_rules={"actions_per_minute": {"limit": 5, "policy": "block"}})
    bot, human = new_user(), new_user()

    await score_n(api, bot, 5)
    for _ in range(3):
        refused = await api.complete(bot, await api.issue(bot))
        body = problem(refused, 429, "velocity_exceeded")
        assert body["rule"] == "actions_per_minute"
        assert refused.headers["retry-after"] == "60"

    assert scores(await api.leaderboard()) == {bot: 50}
    assert await update_count(settings, bot) == 5
    [flag] = await flags(api, bot)
    assert (flag["rule"], flag["policy"]) == ("actions_per_minute", "block")

    await score_n(api, human, 3)  # the limit is per user
    assert scores(await api.leaderboard()) == {bot: 50, human: 30}
    assert await flags(api, human) == []


async def test_a_blocked_ticket_is_not_used_up(start: Start) -> None:
    """The velocity check runs before the write: the refused ticket still counts, once, when
    the window has moved on."""
    api = await start(
        abuse_rules={"actions_per_minute": {"limit": 3, "window": 2, "policy": "block"}}
    )
    bot = new_user()
    await clear_of_window_edges(2, margin=1.5)
    await score_n(api, bot, 3)
    ticket = await api.issue(bot)
    first = await api.complete(bot, ticket)
    problem(first, 429, "velocity_exceeded")
    assert first.headers["retry-after"] == "2"

    deadline = time.monotonic() + 8
    while True:
        retried = await api.complete(bot, ticket)
        if retried.status_code != 429 or time.monotonic() > deadline:
            break
        problem(retried, 429, "velocity_exceeded")
        await asyncio.sleep(0.25)
    assert retried.status_code == 200, retried.text
    assert retried.json()["newScore"] == 40
    # Once only: a replay is refused (429 while the window is full again, else 409).
    problem_by_status(await api.complete(bot, ticket), REPLAY_REFUSALS)
    assert scores(await api.leaderboard()) == {bot: 40}


async def test_refusals_before_the_check_are_free_but_late_failures_count(start: Start) -> None:
    """Completions are counted just before the write (atomically, see the parallel test):
    a replay reaches that point and counts; an early completion is refused before it."""
    api = await start(abuse_rules={"actions_per_minute": {"limit": 3, "policy": "block"}})
    user = new_user()
    used = await api.issue(user)
    assert (await api.complete(user, used)).status_code == 200  # 1
    for _ in range(2):
        problem(await api.complete(user, used), 409, "action_already_used")  # 2, 3
    for _ in range(2):
        problem(await api.complete(user, await api.issue(user, "slow")), 422, "action_not_ready")
    problem(await api.complete(user, await api.issue(user)), 429, "velocity_exceeded")
    assert scores(await api.leaderboard()) == {user: 10}


@pytest.mark.slow
async def test_a_parallel_burst_cannot_outrun_a_blocking_rule(tmp_path: Path) -> None:
    """The test client runs requests one at a time, so this needs a real server."""
    rules = {"actions_per_minute": {"limit": 3, "policy": "block"}}
    env = settings_env(
        f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}",
        tmp_path,
        SCOREBOARD_ABUSE_RULES=json.dumps(rules),
    )
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            api = Api(client)
            bot = new_user()
            tickets = [await api.issue(bot) for _ in range(50)]
            await clear_of_window_edges(60)
            responses = await asyncio.gather(*(api.complete(bot, t) for t in tickets))
            statuses = sorted(response.status_code for response in responses)
            assert set(statuses) <= {200, 429}, statuses
            for response in responses:
                if response.status_code == 429:
                    problem(response, 429, "velocity_exceeded")
            accepted = statuses.count(200)
            assert scores(await api.leaderboard()) == {bot: 10 * accepted}
            # Exactly the limit: fewer would mean the rule refuses what it should let through.
            assert accepted == 3, statuses
    finally:
        server.stop()


async def test_suspend_policy_suspends_the_scripted_player(
    start: Start, settings: Settings
) -> None:
    api = await start(abuse_rules={"actions_per_minute": {"limit": 3, "policy": "suspend"}})
    bot = new_user()
    await score_n(api, bot, 3)
    problem(await api.complete(bot, await api.issue(bot)), 429, "velocity_exceeded")

    assert (await history(api, bot))["suspended"] is True
    assert await suspended_by(settings, bot) == "rule:actions_per_minute"
    [flag] = await flags(api, bot)
    assert (flag["rule"], flag["policy"]) == ("actions_per_minute", "suspend")
    for _ in range(2):
        problem(await api.complete(bot, await api.issue(bot)), 403, "user_suspended")
    assert scores(await api.leaderboard()) == {bot: 30}
    me = await api.client.get("/api/leaderboard/me", headers=bearer(api.token(bot)))
    assert me.status_code == 200  # reading is still allowed

    lifted = await api.client.post(
        f"/api/admin/users/{bot}/unsuspend", json={"reason": "false positive"}, headers=admin()
    )
    assert lifted.json()["changed"] is True
    assert (await history(api, bot))["suspended"] is False
    assert await suspended_by(settings, bot) is None


async def test_points_per_minute_counts_points_not_actions(start: Start) -> None:
    api = await start(abuse_rules={"points_per_minute": {"limit": 250, "policy": "block"}})
    whale = new_user()
    await score_n(api, whale, 2, "big")  # 200 points
    refused = await api.complete(whale, await api.issue(whale, "big"))
    assert problem(refused, 429, "velocity_exceeded")["rule"] == "points_per_minute"
    assert (await api.score(whale))["newScore"] == 210  # ten more points still fit
    assert scores(await api.leaderboard()) == {whale: 210}
    [flag] = await flags(api, whale)
    assert flag["rule"] == "points_per_minute"
    assert flag["evidence"] == {"points": 100, "limit": 250, "windowSeconds": 60}


async def completed_once_the_actions_window_allows(api: Api, user_id: str) -> int:
    """Complete a new action, retrying while actions_per_minute refuses; the new score."""
    deadline = time.monotonic() + 8
    while True:
        answer = await api.complete(user_id, await api.issue(user_id))
        if answer.status_code != 429 or time.monotonic() > deadline:
            break
        assert problem(answer, 429, "velocity_exceeded")["rule"] == "actions_per_minute"
        await asyncio.sleep(0.25)
    assert answer.status_code == 200, answer.text
    score: int = answer.json()["newScore"]
    return score


async def test_points_per_minute_flags_under_flag(start: Start) -> None:
    api = await start(abuse_rules={"points_per_minute": {"limit": 250, "policy": "flag"}})
    whale, small = new_user(), new_user()
    await score_n(api, whale, 5, "big")
    await score_n(api, small, 20)  # 200 points in twenty actions: under the limit
    assert scores(await api.leaderboard()) == {whale: 500, small: 200}
    assert [f["rule"] for f in await flags(api, whale)] == ["points_per_minute"]
    assert await flags(api, small) == []


def test_a_rule_window_is_whole_seconds() -> None:
    with pytest.raises(ValidationError, match="window"):
        Settings(_env_file=None, abuse_rules={"actions_per_minute": {"window": 0.5}})


# --------------------------------------------------------------------------- refusal rules


async def test_ticket_replays_are_flagged(start: Start, settings: Settings) -> None:
    api = await start()  # default: more than 3 replays in 10 minutes
    replayer = new_user()
    ticket = await api.issue(replayer)
    assert (await api.complete(replayer, ticket)).status_code == 200
    for _ in range(3):
        problem(await api.complete(replayer, ticket), 409, "action_already_used")
    assert await flags(api, replayer) == []
    for _ in range(5):
        problem(await api.complete(replayer, ticket), 409, "action_already_used")

    [flag] = await flags(api, replayer)
    assert (flag["rule"], flag["policy"]) == ("ticket_replay", "flag")
    assert flag["evidence"]["code"] == "action_already_used"
    assert (flag["evidence"]["limit"], flag["evidence"]["windowSeconds"]) == (3, 600)
    assert scores(await api.leaderboard()) == {replayer: 10}
    assert len(await flag_rows(settings, user_id=replayer, rule="ticket_replay")) == 1


async def test_a_single_forged_ticket_is_flagged(start: Start, settings: Settings) -> None:
    api = await start()
    forger, thief, victim = new_user(), new_user(), new_user()

    forged = forge_ticket(forger, points=1_000_000, action_secret=OTHER_SECRET)
    problem(await api.complete(forger, forged), 422, "invalid_action")
    [flag] = await flags(api, forger)
    assert (flag["rule"], flag["policy"]) == ("forged_ticket", "flag")
    assert flag["evidence"]["code"] == "invalid_action"
    assert flag["evidence"]["limit"] == 0

    for attempt in (forged, "not-a-ticket", forge_ticket(forger, action_secret=OTHER_SECRET)):
        problem(await api.complete(forger, attempt), 422, "invalid_action")
    assert len(await flag_rows(settings, user_id=forger, rule="forged_ticket")) == 1

    # Completing someone else's ticket is a forgery too.
    stolen = await api.issue(victim)
    problem(await api.complete(thief, stolen), 403, "action_not_owned")
    [theft] = await flags(api, thief)
    assert theft["rule"] == "forged_ticket"
    assert theft["evidence"]["code"] == "action_not_owned"
    assert await flags(api, victim) == []
    assert await api.leaderboard() == []


async def test_early_completions_are_flagged(start: Start) -> None:
    api = await start()  # default: more than 3 early completions in 10 minutes
    rusher = new_user()
    for _ in range(3):
        problem(
            await api.complete(rusher, await api.issue(rusher, "slow")), 422, "action_not_ready"
        )
    assert await flags(api, rusher) == []
    problem(await api.complete(rusher, await api.issue(rusher, "slow")), 422, "action_not_ready")

    [flag] = await flags(api, rusher)
    assert (flag["rule"], flag["policy"]) == ("early_completion", "flag")
    assert flag["evidence"]["code"] == "action_not_ready"
    assert await api.leaderboard() == []


async def test_skewed_timestamps_are_flagged(start: Start) -> None:
    api = await start(abuse_rules={"timestamp_skew": {"limit": 2}})
    skewer = new_user()
    for _ in range(3):
        ticket = await api.issue(skewer)
        refused = await api.complete(skewer, ticket, timestamp=now_iso(-3600))
        problem(refused, 422, "timestamp_out_of_window")
    [flag] = await flags(api, skewer)
    assert flag["rule"] == "timestamp_skew"
    assert flag["evidence"]["code"] == "timestamp_out_of_window"


async def test_repeated_bad_tokens_from_one_address_are_flagged(
    start: Start, settings: Settings
) -> None:
    api = await start(abuse_rules={"auth_failures": {"limit": 3}})
    guesser, clumsy = unique_ip(), unique_ip()
    bad_tokens = [
        "junk",
        make_token("victim", secret=WRONG_JWT_SECRET),
        make_token("victim", ttl=-3600),
    ]

    async def attempt(ip: str, token: str) -> None:
        response = await api.client.get(
            "/api/leaderboard", headers={**bearer(token), PEER_HEADER: ip}
        )
        problem(response, 401, "invalid_token")

    for token in bad_tokens:
        await attempt(guesser, token)
    await attempt(clumsy, "junk")
    assert await flag_rows(settings, client_ip=guesser) == []
    for _ in range(10):
        await attempt(guesser, "junk")

    [row] = await flag_rows(settings, client_ip=guesser)
    assert (row["rule"], row["policy"], row["user_id"]) == ("auth_failures", "flag", None)
    assert row["evidence"]["path"] == "/api/leaderboard"
    assert row["evidence"]["limit"] == 3
    assert await flag_rows(settings, client_ip=clumsy) == []
    listed = await api.client.get(
        "/api/admin/flags", params={"rule": "auth_failures", "limit": "500"}, headers=admin()
    )
    [shown] = [f for f in listed.json()["flags"] if f["clientIp"] == guesser]
    assert shown["userId"] is None


async def test_a_flag_is_recorded_once_per_rule_and_window(
    start: Start, settings: Settings
) -> None:
    api = await start(
        abuse_rules={
            "actions_per_minute": {"limit": 2, "policy": "flag"},
            "forged_ticket": {"window": 1},
        }
    )
    bot = new_user()
    await score_n(api, bot, 10)
    assert len(await flag_rows(settings, user_id=bot, rule="actions_per_minute")) == 1

    forger = new_user()
    forged = forge_ticket(forger, action_secret=OTHER_SECRET)
    await clear_of_window_edges(1, margin=0.7)
    for _ in range(5):
        problem(await api.complete(forger, forged), 422, "invalid_action")
    assert len(await flag_rows(settings, user_id=forger, rule="forged_ticket")) == 1
    # A later window gets a flag of its own.
    deadline = time.monotonic() + 5
    while len(await flag_rows(settings, user_id=forger, rule="forged_ticket")) < 2:
        assert time.monotonic() < deadline, "no second flag in a later window"
        await asyncio.sleep(0.25)
        problem(await api.complete(forger, forged), 422, "invalid_action")


# --------------------------------------------------------------------------- rate limits


async def test_per_user_update_limit(start: Start) -> None:
    api = await start(rate_limit_updates="3/minute")
    user, other = new_user(), new_user()
    await score_n(api, user, 3)

    limited = await api.complete(user, await api.issue(user))
    problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-policy"] == '"updates";q=3;w=60'
    assert re.fullmatch(r'"updates";r=0;t=\d+', limited.headers["ratelimit"])
    assert scores(await api.leaderboard()) == {user: 30}

    await score_n(api, other, 3)  # another user has an allowance of their own
    assert scores(await api.leaderboard()) == {user: 30, other: 30}


async def test_refused_updates_count_against_the_per_user_limit(start: Start) -> None:
    """Each update request counts once against the user's update rate, whatever refuses it:
    a valid ticket's count goes with the velocity rules in one call, a replay, a velocity
    refusal or a forged ticket is counted on its own. Over the rate the 429 comes before any
    other refusal. Guards against refusals slipping past the rate (the rate only counted in
    the velocity call, which a refusal skips or undoes)."""
    api = await start(
        rate_limit_updates="4/minute",
        abuse_rules={"actions_per_minute": {"limit": 2, "policy": "block"}},
    )
    user = new_user()
    ticket = await api.issue(user)
    assert (await api.complete(user, ticket)).status_code == 200
    # A replay passes the velocity rules (counted there once) and is refused at the commit.
    problem(await api.complete(user, ticket), 409, "action_already_used")
    problem(await api.complete(user, await api.issue(user)), 429, "velocity_exceeded")
    problem(await api.complete(user, "not-a-ticket"), 422, "invalid_action")
    fifth = await api.complete(user, await api.issue(user))
    problem(fifth, 429, "rate_limited")
    assert fifth.headers["ratelimit-policy"] == '"updates";q=4;w=60'
    problem(await api.complete(user, "not-a-ticket"), 429, "rate_limited")
    assert scores(await api.leaderboard()) == {user: 10}


async def test_per_address_limit(start: Start) -> None:
    api = await start(rate_limit_ip="5/minute")
    noisy, quiet = unique_ip(), unique_ip()
    headers = bearer(api.token("reader"))
    for _ in range(5):
        response = await api.client.get("/api/leaderboard", headers={**headers, PEER_HEADER: noisy})
        assert response.status_code == 200
    limited = await api.client.get("/api/leaderboard", headers={**headers, PEER_HEADER: noisy})
    problem(limited, 429, "rate_limited")
    assert limited.headers["ratelimit-policy"] == '"ip";q=5;w=60'
    assert int(limited.headers["retry-after"]) >= 1
    # Probes are not limited, and another address is not affected.
    assert (await api.client.get("/healthz", headers={PEER_HEADER: noisy})).status_code == 200
    other = await api.client.get("/api/leaderboard", headers={**headers, PEER_HEADER: quiet})
    assert other.status_code == 200


# --------------------------------------------------------------------------- hardening
# Headers, CORS and the OpenAPI switch do not depend on the database: SQLite only.

ALLOWED_ORIGIN = "https://game.example"


@pytest.fixture
async def hardened(tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}",
        tmp_path,
        allowed_origins=[ALLOWED_ORIGIN],
        rate_limit_updates="1/minute",
        rate_limit_ip="1000/minute",
    )
    async with AsyncTestClient(app=Peer(create_app(settings))) as client:
        yield Api(client)


async def _ok(api: Api) -> httpx.Response:
    return await api.client.get("/api/leaderboard", headers=bearer(api.token("reader")))


async def _created(api: Api) -> httpx.Response:
    return await api.client.post("/api/actions", json={}, headers=bearer(api.token("player")))


async def _unauthorized(api: Api) -> httpx.Response:
    return await api.client.get("/api/leaderboard")


async def _forbidden(api: Api) -> httpx.Response:
    return await api.client.get("/api/admin/flags", headers=bearer(api.token("player")))


async def _not_found_by_handler(api: Api) -> httpx.Response:
    return await api.client.post(
        "/api/admin/flags/nope/resolve", json={"reason": "nothing"}, headers=admin()
    )


async def _bad_request(api: Api) -> httpx.Response:
    return await api.client.post(
        "/api/scores/update", json={"score": 1}, headers=bearer(api.token("player"))
    )


async def _unprocessable(api: Api) -> httpx.Response:
    return await api.complete("player", "not-a-ticket")


async def _too_large(api: Api) -> httpx.Response:
    return await api.client.post(
        "/api/scores/update",
        content=b"{" + b" " * 20_000 + b"}",
        headers={**bearer(api.token("player")), "content-type": "application/json"},
    )


async def _user_rate_limited(api: Api) -> httpx.Response:
    await api.score("player")
    return await api.complete("player", await api.issue("player"))


async def _unknown_route(api: Api) -> httpx.Response:
    return await api.client.get("/no/such/route", headers=bearer(api.token("reader")))


async def _wrong_method(api: Api) -> httpx.Response:
    return await api.client.delete("/api/leaderboard", headers=bearer(api.token("reader")))


async def _cors_refused(api: Api) -> httpx.Response:
    return await api.client.options(
        "/api/leaderboard",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )


RESPONSES: list[Any] = [  # each call, its status, and its problem's code if refused
    pytest.param(_ok, 200, None, id="200-ok"),
    pytest.param(_created, 201, None, id="201-created"),
    pytest.param(_bad_request, 400, "validation_error", id="400-unknown-field"),
    pytest.param(_unauthorized, 401, "invalid_token", id="401-no-token"),
    pytest.param(_forbidden, 403, "insufficient_scope", id="403-insufficient-scope"),
    pytest.param(_not_found_by_handler, 404, "not_found", id="404-unknown-flag"),
    pytest.param(_too_large, 413, "payload_too_large", id="413-body-too-large"),
    pytest.param(_unprocessable, 422, "invalid_action", id="422-invalid-action"),
    pytest.param(_user_rate_limited, 429, "rate_limited", id="429-per-user"),
    pytest.param(_unknown_route, 404, "not_found", id="404-unknown-route"),
    pytest.param(_wrong_method, 405, "method_not_allowed", id="405-wrong-method"),
    pytest.param(_cors_refused, 400, "cors_refused", id="400-cors-refused"),
]


@pytest.mark.parametrize(("call", "status", "code"), RESPONSES)
async def test_security_headers_are_on_every_response(
    hardened: Api,
    call: Callable[[Api], Awaitable[httpx.Response]],
    status: int,
    code: str | None,
) -> None:
    response = await call(hardened)
    if code is None:
        assert response.status_code == status, response.text
    else:
        problem(response, status, code)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


async def test_security_headers_are_on_a_per_address_429(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}", tmp_path, rate_limit_ip="2/minute"
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        api = Api(client)
        for _ in range(2):
            assert (await _ok(api)).status_code == 200
        response = await _ok(api)
        problem(response, 429, "rate_limited")
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (name, dict(response.headers))


async def test_cors_preflight_from_an_allowed_origin(hardened: Api) -> None:
    response = await hardened.client.options(
        "/api/scores/update",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204), response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers

    simple = await hardened.client.get(
        "/api/leaderboard", headers={"Origin": ALLOWED_ORIGIN, **bearer(hardened.token("r"))}
    )
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "retry-after" in simple.headers["access-control-expose-headers"].lower()


async def test_cors_refuses_other_origins(hardened: Api, tmp_path: Path) -> None:
    preflight = await hardened.client.options(
        "/api/scores/update",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    problem(preflight, 400, "cors_refused")
    assert "access-control-allow-origin" not in preflight.headers
    simple = await hardened.client.get(
        "/api/leaderboard",
        headers={"Origin": "https://evil.example", **bearer(hardened.token("r"))},
    )
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers

    # With no allowlist at all, no origin is allowed.
    data_dir = tmp_path / "no-cors"
    closed = make_settings(f"sqlite+aiosqlite:///{data_dir / 'scoreboard.db'}", data_dir)
    async with AsyncTestClient(app=create_app(closed)) as client:
        response = await client.options(
            "/api/leaderboard",
            headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("openapi", [True, False])
async def test_openapi_can_be_switched_off(tmp_path: Path, openapi: bool) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}", tmp_path, openapi=openapi
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        for path in ("/schema", "/schema/openapi.json"):
            response = await client.get(path)
            if openapi:
                assert response.status_code == 200, path
            else:
                problem(response, 404, "not_found")
        assert (await client.get("/healthz")).status_code == 200
