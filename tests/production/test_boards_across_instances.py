"""Boards in the production shape, as real processes: two instances on one PostgreSQL and one
Redis. A live client on one instance follows boards it subscribes to and hears updates
accepted by the other; board changes made on one reach the other at once; and 200
concurrent updates feeding three boards agree in PostgreSQL, the audit rows, Redis and the
API of both instances, on every board."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.boards.test_boards_api import BOARDS_FILE
from tests.helpers import Api, bearer, make_token
from tests.live.wsclient import closed_with, next_event, open_ws, ws_url
from tests.production.conftest import Shape, eventually, plain_url
from tests.server import ServerProcess

pytestmark = pytest.mark.slow


def admin() -> dict[str, str]:
    """A fresh admin token each time: one made at import would expire (600 s) before a
    late test in a long run uses it."""
    return bearer(make_token("boss", scopes=("scores:admin",)))


async def frames(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Everything the server sends in the next ``seconds``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return seen


async def updates_of(
    ws: ClientConnection, boards: set[str], wait: float = 10
) -> dict[str, dict[str, Any]]:
    """The next leaderboard_update of each of these boards (other frames are skipped)."""
    deadline = time.monotonic() + wait
    found: dict[str, dict[str, Any]] = {}
    while set(found) != boards:
        event = await next_event(ws, "leaderboard_update", deadline - time.monotonic())
        if event["board"] in boards:
            found.setdefault(event["board"], event)
    return found


async def update_of(ws: ClientConnection, board: str, wait: float = 10) -> dict[str, Any]:
    return (await updates_of(ws, {board}, wait))[board]


def boards_app(shape: Shape, name: str) -> ServerProcess:
    return shape.app(name, SCOREBOARD_ACTIONS_FILE=str(BOARDS_FILE))


async def test_live_clients_follow_the_boards_they_subscribe_to_across_instances(
    shape: Shape,
) -> None:
    first, second = boards_app(shape, "app-a"), boards_app(shape, "app-b")
    ws = await open_ws(second, make_token("watcher"))
    try:
        hello = await next_event(ws, "connection_success")
        assert (hello["board"], hello["period"]) == ("global", "all")
        await ws.send(json.dumps({"type": "subscribe", "boards": ["daily", "weekly"]}))
        await updates_of(ws, {"daily", "weekly"})  # a snapshot of each

        async with httpx.AsyncClient(base_url=first.url, timeout=15) as client:
            api = Api(client)
            await api.score("ann", "play")  # accepted by A: global, weekly and daily
            updates = await updates_of(ws, {"global", "daily", "weekly"})
            for update in updates.values():
                assert [(e["userId"], e["score"]) for e in update["leaderboard"]] == [("ann", 10)]

            await ws.send(json.dumps({"type": "unsubscribe", "boards": ["global", "weekly"]}))
            await asyncio.sleep(0.3)
            await api.score("ben", "big")
            heard = [f for f in await frames(ws, 2.0) if f["type"] == "leaderboard_update"]
            assert {f["board"] for f in heard} == {"daily"}
            assert heard[-1]["leaderboard"][0] == {
                "userId": "ben",
                "username": "name-ben",
                "score": 100,
                "rank": 1,
            }

            # Refusals are error events; the connection stays.
            for message, code in (
                ({"type": "subscribe", "boards": ["nope"]}, "unknown_board"),
                ({"type": "subscribe", "boards": [f"b{i}" for i in range(11)]}, "invalid_message"),
                ({"type": "subscribe", "boards": "daily"}, "invalid_message"),
                ({"type": "shout"}, "unknown_message"),
            ):
                await ws.send(json.dumps(message))
                assert (await next_event(ws, "error"))["code"] == code
            await ws.send(json.dumps({"type": "ping"}))
            await next_event(ws, "pong")

            # A board defined on A: B learns of it at once, takes subscriptions and scores.
            definition = {"reason": "event", "reset": "manual", "actions": ["solo"]}
            created = await client.put("/api/admin/boards/event", json=definition, headers=admin())
            assert created.status_code == 201, created.text
        async with httpx.AsyncClient(base_url=second.url, timeout=15) as client:
            await ws.send(json.dumps({"type": "subscribe", "boards": ["event"]}))
            assert (await update_of(ws, "event"))["leaderboard"] == []
            done = await Api(client).score("cat", "solo")
            assert [b["board"] for b in done["boards"]] == ["global", "event"]
            assert (await update_of(ws, "event"))["leaderboard"][0]["userId"] == "cat"
        # Rolled over on A: B's follower gets the reset, then the empty board.
        async with httpx.AsyncClient(base_url=first.url, timeout=15) as client:
            rolled = await client.post(
                "/api/admin/boards/event/rollover", json={"reason": "round 2"}, headers=admin()
            )
            assert rolled.json()["period"] == "2"
        reset = await next_event(ws, "board_reset")
        assert reset == {
            "type": "board_reset",
            "board": "event",
            "period": "2",
            "previousPeriod": "1",
        }
        fresh = await update_of(ws, "event")
        assert (fresh["period"], fresh["leaderboard"]) == ("2", [])
    finally:
        await ws.close()

    # An unknown board on connect is refused with 4404.
    from websockets.asyncio.client import connect

    refused = await connect(
        ws_url(second) + "?board=nope",
        additional_headers={"Authorization": f"Bearer {make_token('x')}"},
    )
    assert await closed_with(refused) == (4404, "there is no board 'nope'")


async def test_concurrent_updates_on_three_boards_agree_everywhere(shape: Shape) -> None:
    first, second = boards_app(shape, "app-a"), boards_app(shape, "app-b")
    users = [f"u{n:02d}" for n in range(50)]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60, limits=limits) as a,
        httpx.AsyncClient(base_url=second.url, timeout=60, limits=limits) as b,
    ):
        apis = [Api(a), Api(b)]
        tickets = [(user, await apis[0].issue(user, "play")) for user in users for _ in range(4)]
        responses = await asyncio.gather(
            *(apis[i % 2].complete(user, action) for i, (user, action) in enumerate(tickets))
        )
        assert [r.status_code for r in responses] == [200] * 200
        periods = {b["board"]: b["period"] for b in responses[0].json()["boards"]}
        assert set(periods) == {"global", "weekly", "daily"}
        expected = {user: 40 for user in users}

        conn = await asyncpg.connect(plain_url(shape.database_url), timeout=5)
        try:
            audit = await conn.fetch("SELECT boards FROM score_updates")
            for board, period in periods.items():
                rows = await conn.fetch(
                    "SELECT user_id, score FROM user_scores WHERE board_id = $1 "
                    "AND period_key = $2",
                    board,
                    period,
                )
                assert {r["user_id"]: r["score"] for r in rows} == expected, board
        finally:
            await conn.close()
        assert len(audit) == 200
        assert {r["boards"] for r in audit} == {json.dumps(periods, separators=(",", ":"))}

        for board, period in periods.items():
            await eventually(
                lambda board=board, period=period: shape.redis_board(board, period),  # type: ignore[misc]
                expected,
                10,
                f"Redis {board}",
            )
            for api in apis:
                page = await api.board(board, limit=100)
                assert {e["userId"]: e["score"] for e in page["leaderboard"]} == expected
                assert page["total"] == 50
