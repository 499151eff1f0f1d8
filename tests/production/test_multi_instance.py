"""Two app instances on one PostgreSQL database and one Redis, nginx in front: fan-out
crosses instances, and 500 concurrent updates (and a game server's batch of 100) through the
load balancer all agree in PostgreSQL, the audit trail, the Redis ranking and the API."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers import Api, forge_ticket, game_server, make_token, post_batch
from tests.live.wsclient import next_event, open_ws
from tests.production.conftest import (
    POINTS,
    Ledger,
    Shape,
    assert_ranked_and_durable,
    board_shows,
    score,
)

pytestmark = pytest.mark.slow
USERS = 50
UPDATES_PER_USER = 10


async def test_two_instances_behind_nginx_agree_everywhere(shape: Shape) -> None:
    first, second = shape.app("app-a"), shape.app("app-b")
    nginx = shape.nginx(first, second)
    ledger = Ledger()

    # A client on B hears an update accepted by A: the board, and the user's own score.
    watcher = await open_ws(second, make_token("watcher"))
    mine = await open_ws(second, make_token("alice", username="Alice"))
    try:
        await next_event(watcher, "connection_success")
        await next_event(mine, "connection_success")
        async with httpx.AsyncClient(base_url=first.url, timeout=15) as client:
            body = await score(Api(client), ledger, "alice")
        assert body["newScore"] == POINTS
        await board_shows(watcher, "alice", POINTS, wait=10)
        personal = await next_event(mine, "score_update")
        assert personal == {
            "type": "score_update",
            "board": "global",
            "period": "all",
            "userId": "alice",
            "newScore": 10,
            "rank": 1,
        }
    finally:
        await watcher.close()
        await mine.close()

    # 500 concurrent updates through nginx across 50 users.
    users = [f"load-{n:02d}" for n in range(USERS)]
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=nginx.url, timeout=60, limits=limits) as client:
        api = Api(client)
        issuing = asyncio.Semaphore(50)

        async def issue(user_id: str) -> tuple[str, str]:
            async with issuing:
                return user_id, await api.issue(user_id)

        tickets = await asyncio.gather(
            *(issue(user) for user in users for _ in range(UPDATES_PER_USER))
        )
        responses = await asyncio.gather(
            *(api.complete(user_id, action_id) for user_id, action_id in tickets)
        )
        # A game server's batch of 100: a body nginx lets through on this route only.
        batch = [(user, forge_ticket(user)) for user in users for _ in range(2)]
        batched = await post_batch(api, game_server(), [ticket for _, ticket in batch])
    refused = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert refused == []
    for user_id, action_id in tickets:
        ledger.record(user_id, action_id)
    assert batched.status_code == 200, batched.text
    assert [r["success"] for r in batched.json()["results"]] == [True] * len(batch)
    for user_id, ticket in batch:
        ledger.record(user_id, ticket)
    assert ledger.expected() == {"alice": POINTS} | {
        user: POINTS * (UPDATES_PER_USER + 2) for user in users
    }
    await assert_ranked_and_durable(
        shape, ledger, [nginx.url, first.url, second.url], redis_within=10
    )
