"""POST /api/scores/batch: up to 100 completions in one request, each with its own outcome,
the accepted ones in one group-commit transaction, each ticket exactly once. On every backend
(SQLite, PostgreSQL, PostgreSQL + Redis) unless marked ``one_backend``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from scoreboard.config import Settings
from tests.abuse.test_velocity import clear_of_window_edges
from tests.conftest import served_by_redis
from tests.helpers import (
    BATCH,
    Api,
    ago,
    bearer,
    database_of,
    forge_ticket,
    game_server,
    make_settings,
    make_token,
    new_user,
    now_iso,
    on_global,
    post_batch,
    problem,
    samples,
    score_events,
    stored_at,
    value,
)

USED = {"code": "action_already_used", "detail": "this action was already completed"}


def results(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    found: list[dict[str, Any]] = response.json()["results"]
    return found


def scored(action_id: str, score: int, rank: int) -> dict[str, Any]:
    """What an accepted item answers, for an action feeding only the global board."""
    return {"actionId": action_id, "success": True, "newScore": score, "rank": rank} | on_global(
        score, rank
    )


def refused(action_id: str, code: str) -> tuple[str, bool, str]:
    return (action_id, False, code)


def shape_of(result: dict[str, Any]) -> tuple[str, bool, str] | dict[str, Any]:
    """A refused item as (actionId, False, code), checked to carry a detail and nothing else;
    an accepted one as it is."""
    if result["success"]:
        return result
    assert set(result) == {"actionId", "success", "code", "detail"}, result
    assert result["detail"], result
    return (result["actionId"], False, result["code"])


def board_scores(board: list[dict[str, Any]]) -> dict[str, int]:
    return {entry["userId"]: entry["score"] for entry in board}


def metrics_of(client: AsyncTestClient[Any]) -> dict[Any, float]:
    return samples(client.app.state.metrics.scrape().decode())


def updates_counted(found: dict[Any, float], board: str, outcome: str) -> float:
    return value(found, "scoreboard_score_updates_total", board=board, outcome=outcome) or 0.0


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Start]:
    """The service of the shared fixtures (every backend) with some settings changed."""
    apps: list[Any] = []
    async with AsyncExitStack() as stack:

        async def started(**overrides: Any) -> Api:
            values = settings.model_dump(exclude={"database_url", "data_dir"}) | overrides
            tuned = make_settings(settings.resolved_database_url, settings.data_dir, **values)
            apps.append(create_app(tuned))
            api = Api(await stack.enter_async_context(AsyncTestClient(app=apps[-1])))
            await clear_of_window_edges(60)  # the limits count in epoch-aligned minutes
            return api

        yield started
        for app in apps:
            served_by_redis(app)


# --------------------------------------------------------------------------- outcomes


async def test_a_mixed_batch_answers_each_item_in_order_and_scores_only_the_valid_ones(
    client: AsyncTestClient[Any], api: Api
) -> None:
    seen = score_events(client)
    alice, bob = new_user(), new_user()
    replayed = await api.issue(alice)
    assert (await api.complete(alice, replayed)).status_code == 200  # alice: 10
    await api.score(bob, "big")  # bob: 100
    valid, big = await api.issue(alice), await api.issue(alice, "big")
    bobs = await api.issue(bob)
    expired = forge_ticket(alice, issued_at=ago(120), ttl=60)
    early = await api.issue(alice, "slow")
    naive, skewed = await api.issue(alice), await api.issue(alice)
    batch = [valid, replayed, bobs, expired, "not-a-ticket", big, early, naive, skewed, valid]
    before = metrics_of(client)

    response = await post_batch(
        api,
        api.token(alice),
        batch,
        timestamps={7: "2026-01-01T00:00:00", 8: now_iso(-300)},  # no offset; 5 min ago
    )

    assert [shape_of(r) for r in results(response)] == [
        scored(valid, 20, 2),  # the rank of its own score: bob is ahead until the next item
        refused(replayed, "action_already_used"),
        refused(bobs, "action_not_owned"),
        refused(expired, "action_expired"),
        refused("not-a-ticket", "invalid_action"),
        scored(big, 120, 1),
        refused(early, "action_not_ready"),
        refused(naive, "validation_error"),
        refused(skewed, "timestamp_out_of_window"),
        refused(valid, "action_already_used"),  # its first copy is earlier in this batch
    ]
    assert results(response)[-1] | {"actionId": ""} == {"actionId": "", "success": False, **USED}
    assert await api.leaderboard() == [
        {"userId": alice, "username": f"name-{alice}", "score": 120, "rank": 1},
        {"userId": bob, "username": f"name-{bob}", "score": 100, "rank": 2},
    ]
    score, audit = await stored_at(database_of(api), alice)
    assert (score, sorted(points for points, _ in audit)) == (120, [10, 10, 100])
    assert await stored_at(database_of(api), bob) == (100, [(100, None)])

    # Each item counted once, by outcome; the unreadable ticket on board "none".
    after = metrics_of(client)
    counted = {
        (board, outcome): updates_counted(after, board, outcome)
        - updates_counted(before, board, outcome)
        for board, outcome in [
            ("global", "accepted"),
            ("global", "action_already_used"),
            ("global", "action_not_owned"),
            ("global", "action_expired"),
            ("global", "action_not_ready"),
            ("global", "validation_error"),
            ("global", "timestamp_out_of_window"),
            ("none", "invalid_action"),
        ]
    }
    assert counted == {
        ("global", "accepted"): 2,
        ("global", "action_already_used"): 2,
        ("global", "action_not_owned"): 1,
        ("global", "action_expired"): 1,
        ("global", "action_not_ready"): 1,
        ("global", "validation_error"): 1,
        ("global", "timestamp_out_of_window"): 1,
        ("none", "invalid_action"): 1,
    }

    # Announced as single updates are: each accepted item with its own score and rank.
    for _ in range(250):
        if len([e for e in seen if e.user_id == alice]) >= 3:
            break
        await asyncio.sleep(0.02)
    mine = [(e.board, e.new_score, e.rank) for e in seen if e.user_id == alice]
    assert mine == [("global", 10, 1), ("global", 20, 2), ("global", 120, 1)]

    # A refused item does not use its ticket up: bob can still complete his.
    completed = await api.complete(bob, bobs)
    assert completed.status_code == 200, completed.text
    assert completed.json()["newScore"] == 110


async def test_a_ticket_twice_in_one_batch_scores_once(api: Api) -> None:
    alice = new_user()
    first, second = await api.issue(alice), await api.issue(alice)
    response = await post_batch(api, api.token(alice), [first, first, second, first])
    assert [shape_of(r) for r in results(response)] == [
        scored(first, 10, 1),
        refused(first, "action_already_used"),
        scored(second, 20, 1),
        refused(first, "action_already_used"),
    ]
    assert await stored_at(database_of(api), alice) == (20, [(10, None), (10, None)])
    again = await post_batch(api, api.token(alice), [first, second])
    assert [shape_of(r) for r in results(again)] == [
        refused(first, "action_already_used"),
        refused(second, "action_already_used"),
    ]
    assert board_scores(await api.leaderboard()) == {alice: 20}


async def test_twenty_parallel_batches_overlapping_in_tickets_score_each_ticket_once(
    api: Api,
) -> None:
    users = [new_user() for _ in range(40)]
    tickets = {forge_ticket(user): user for user in users}
    pool = list(tickets)
    batches = [[pool[(3 * k + j) % len(pool)] for j in range(10)] for k in range(20)]
    assert all(sum(t in b for b in batches) >= 3 for t in pool)  # every ticket is contended

    responses = await asyncio.gather(
        *(post_batch(api, game_server(f"server-{k % 3}"), batch) for k, batch in enumerate(batches))
    )

    wins: Counter[str] = Counter()
    for batch, response in zip(batches, responses, strict=True):
        answered = results(response)
        assert [r["actionId"] for r in answered] == batch  # in input order
        for result in answered:
            if result["success"]:
                wins[result["actionId"]] += 1
                assert (result["newScore"], result["rank"]) == (10, 1)
            else:
                assert {k: result[k] for k in ("code", "detail")} == USED, result
    assert wins == Counter(pool)  # every ticket exactly once
    board = await api.leaderboard(limit=100)
    assert board_scores(board) == dict.fromkeys(users, 10)
    assert all(entry["username"] == entry["userId"] for entry in board)  # no name known: the id
    for user in users:
        assert await stored_at(database_of(api), user) == (10, [(10, None)])


# --------------------------------------------------------------------------- who may complete


async def test_a_user_completes_its_own_tickets_and_a_game_server_anyones(api: Api) -> None:
    alice, bob = new_user(), new_user()
    await api.score(alice)  # alice is known by her name
    mine, hers, his, bobs_too = (
        await api.issue(alice),
        await api.issue(alice),
        await api.issue(bob),
        await api.issue(bob),
    )

    as_alice = await post_batch(api, api.token(alice), [mine, his])
    assert [shape_of(r) for r in results(as_alice)] == [
        scored(mine, 20, 1),
        refused(his, "action_not_owned"),  # that item's failure, not the batch's
    ]

    as_server = await post_batch(api, game_server(), [hers, his])
    assert [shape_of(r) for r in results(as_server)] == [scored(hers, 30, 1), scored(his, 10, 2)]
    # A token holding both scopes completes anyone's too.
    both = make_token("ops", scopes=("scores:write", "scores:submit"))
    assert [shape_of(r) for r in results(await post_batch(api, both, [bobs_too]))] == [
        scored(bobs_too, 20, 2)
    ]

    assert await api.leaderboard() == [
        {"userId": alice, "username": f"name-{alice}", "score": 30, "rank": 1},  # name kept
        {"userId": bob, "username": bob, "score": 20, "rank": 2},  # none known: the id
    ]
    assert (await stored_at(database_of(api), bob))[0] == 20
    assert await stored_at(database_of(api), "game-server") == (None, [])


@pytest.mark.one_backend
async def test_a_batch_needs_scores_write_or_scores_submit(api: Api) -> None:
    ticket = forge_ticket(new_user())
    for scopes in [("leaderboard:read",), ("actions:issue",), ("scores:admin",)]:
        response = await post_batch(api, make_token("svc", scopes=scopes), [ticket])
        body = problem(response, 403, "insufficient_scope")
        assert body["acceptedScopes"] == ["scores:write", "scores:submit"]
    problem(await api.client.post(BATCH, json={"updates": []}), 401, "invalid_token")


# --------------------------------------------------------------------------- limits


@pytest.mark.one_backend
async def test_more_than_a_hundred_items_are_refused_whole_and_none_is_empty(api: Api) -> None:
    alice = new_user()
    response = await post_batch(api, api.token(alice), [forge_ticket(alice) for _ in range(101)])
    body = problem(response, 413, "batch_too_large")
    assert "100" in body["detail"]
    empty = await api.client.post(BATCH, json={"updates": []}, headers=bearer(api.token(alice)))
    problem(empty, 400, "validation_error")
    assert await api.leaderboard() == []
    assert await stored_at(database_of(api), alice) == (None, [])


async def test_the_velocity_rules_count_each_item(start: Start) -> None:
    api = await start(abuse_rules={"actions_per_minute": {"limit": 3, "policy": "block"}})
    alice = new_user()
    tickets = [await api.issue(alice) for _ in range(5)]
    response = await post_batch(api, api.token(alice), tickets)
    assert [shape_of(r) for r in results(response)] == [
        scored(tickets[0], 10, 1),
        scored(tickets[1], 20, 1),
        scored(tickets[2], 30, 1),
        refused(tickets[3], "velocity_exceeded"),
        refused(tickets[4], "velocity_exceeded"),
    ]
    assert (await stored_at(database_of(api), alice))[0] == 30
    # The batch spent the minute's budget: a single update after it is refused too.
    problem(await api.complete(alice, tickets[3]), 429, "velocity_exceeded")
    # A game server's items count against the player they score.
    bob = new_user()
    for_bob = [forge_ticket(bob) for _ in range(4)]
    answered = results(await post_batch(api, game_server(), for_bob))
    assert [r["success"] for r in answered] == [True, True, True, False]
    assert answered[3]["code"] == "velocity_exceeded"
    assert board_scores(await api.leaderboard()) == {alice: 30, bob: 30}


async def test_the_update_rate_counts_each_item(start: Start) -> None:
    api = await start(rate_limit_updates="4/minute")
    alice, carol = new_user(), new_user()
    too_many = await post_batch(api, api.token(alice), [forge_ticket(alice) for _ in range(5)])
    body = problem(too_many, 429, "rate_limited")  # the request as a whole
    assert int(too_many.headers["Retry-After"]) > 0
    assert "updates" in body["detail"]
    assert await api.leaderboard() == []  # and nothing was written or counted

    fits = await post_batch(api, api.token(alice), [forge_ticket(alice) for _ in range(4)])
    assert [r["success"] for r in results(fits)] == [True] * 4
    problem(await api.complete(alice, forge_ticket(alice)), 429, "rate_limited")

    # A game server is limited per player: alice's item is refused, carol's goes through.
    mixed = [forge_ticket(alice), forge_ticket(carol)]
    answered = results(await post_batch(api, game_server(), mixed))
    assert [shape_of(r) for r in answered] == [
        refused(mixed[0], "rate_limited"),
        scored(mixed[1], 10, 2),
    ]
    assert board_scores(await api.leaderboard()) == {alice: 40, carol: 10}


# --------------------------------------------------------------------------- one transaction


async def test_the_accepted_items_of_a_batch_commit_in_one_transaction(
    client: AsyncTestClient[Any], api: Api
) -> None:
    users = [new_user() for _ in range(99)]
    tickets = [forge_ticket(user) for user in users]
    before = metrics_of(client)
    response = await post_batch(api, game_server(), [*tickets[:50], "junk", *tickets[50:]])
    after = metrics_of(client)

    answered = results(response)  # 100 items: the most a batch may hold
    assert [r["success"] for r in answered] == [True] * 50 + [False] + [True] * 49
    # Nothing else was writing: one group commit, holding the 99 accepted changes.
    count, total = "scoreboard_write_batch_size_count", "scoreboard_write_batch_size_sum"
    assert (value(after, count) or 0) - (value(before, count) or 0) == 1
    assert (value(after, total) or 0) - (value(before, total) or 0) == 99
    accepted = updates_counted(after, "global", "accepted")
    assert accepted - updates_counted(before, "global", "accepted") == 99
    assert board_scores(await api.leaderboard(limit=100)) == dict.fromkeys(users, 10)


async def test_a_database_that_is_away_refuses_the_batch_whole_with_503(
    tmp_path: Path, sqlite_url: str
) -> None:
    app = create_app(make_settings(sqlite_url, tmp_path))
    async with AsyncTestClient(app=app) as client:
        api = Api(client)
        alice = new_user()
        tickets = [forge_ticket(alice), forge_ticket(alice)]
        blocker = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            response = await post_batch(api, api.token(alice), tickets)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        problem(response, 503, "service_unavailable")
        assert int(response.headers["Retry-After"]) > 0
        assert await stored_at(sqlite_url, alice) == (None, [])
        # Nothing was written: the same batch, sent again, scores.
        retried = await post_batch(api, api.token(alice), tickets)
        assert [r["newScore"] for r in results(retried)] == [10, 20]
