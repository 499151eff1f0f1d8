"""The production shape surviving its parts failing: Redis stopped, PostgreSQL unreachable,
an instance killed with SIGKILL under load, and a cache that drifted. Each test ends with
the invariant: every update answered 200 is in PostgreSQL and ranked, nothing else scored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.helpers import Api, make_token, scrape, value
from tests.live.wsclient import next_event, open_ws
from tests.processes import RedisServer
from tests.production.conftest import (
    POINTS,
    Ledger,
    Shape,
    assert_ranked_and_durable,
    audit_id,
    board_shows,
    eventually,
    leaderboard_scores,
    score,
    stored,
    via_port,
)

pytestmark = pytest.mark.slow
RECOVERY = 20.0  # seconds the service may take to heal itself


async def _readyz(base_url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        response = await client.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def _gauges(client: httpx.AsyncClient, *names: str) -> tuple[float | None, ...]:
    found = await scrape(client)
    return tuple(value(found, name) for name in names)


# --- Redis stopped ---------------------------------------------------------------------------


async def test_redis_stopped_then_back(shape: Shape, redis_server: RedisServer) -> None:
    first, second = shape.app("app-a"), shape.app("app-b")
    ledger = Ledger()
    async with httpx.AsyncClient(base_url=first.url, timeout=15) as client:
        api = Api(client)
        for user in ("before-1", "before-2"):
            await score(api, ledger, user)
        await eventually(shape.redis_board, ledger.expected(), 10, "Redis before the outage")

        watcher = await open_ws(first, make_token("watcher"))
        try:
            await next_event(watcher, "connection_success")
            redis_server.stop()

            # Updates keep being accepted, on both instances.
            for _ in range(3):
                for user in ("during-1", "during-2", "before-1"):
                    await score(api, ledger, user)
            async with httpx.AsyncClient(base_url=second.url, timeout=15) as other:
                await score(Api(other), ledger, "during-b")
            # A client on the same instance still hears them.
            expected = ledger.expected()
            await score(api, ledger, "during-1")
            await board_shows(watcher, "during-1", expected["during-1"] + POINTS, wait=10)
        finally:
            await watcher.close()

        # Reads answer from PostgreSQL, with the new scores; ready, but Redis degraded.
        assert await leaderboard_scores(first.url) == ledger.expected()
        assert await leaderboard_scores(second.url) == ledger.expected()
        status, health = await _readyz(first.url)
        assert status == 200, health
        assert health["redis"] == "unavailable"
        assert health["database"] == "ok"
        # And the metrics say so: Redis down, reads from the database.
        await eventually(
            lambda: _gauges(client, "scoreboard_redis_up", "scoreboard_cache_stale"),
            (0.0, 1.0),
            10,
            "the Redis probe and the stale gauge",
        )
        found = await scrape(client)
        reads = "scoreboard_cache_reads_total"
        assert (value(found, reads, operation="top", result="fallback") or 0) > 0
        assert value(found, "scoreboard_database_up") == 1

        # Redis comes back empty on the same port: the cache is rebuilt without a restart.
        redis_server.start()
        await eventually(shape.redis_board, ledger.expected(), RECOVERY, "rebuilt Redis ZSET")
        await eventually(
            lambda: _readyz(first.url),
            (200, {"status": "ok", "database": "ok", "writer": "ok", "redis": "ok"}),
            RECOVERY,
            "readyz after Redis is back",
        )
        await eventually(
            lambda: _gauges(client, "scoreboard_redis_up", "scoreboard_cache_stale"),
            (1.0, 0.0),
            RECOVERY,
            "the metrics after Redis is back",
        )

        # Cross-instance fan-out resumes: a client on B hears an update made on A.
        listener = await open_ws(second, make_token("listener"))
        try:
            await next_event(listener, "connection_success")
            deadline = time.monotonic() + RECOVERY
            while True:
                await score(api, ledger, "after")
                try:
                    await board_shows(listener, "after", ledger.expected()["after"], wait=2)
                    break
                except (TimeoutError, AssertionError):
                    if time.monotonic() > deadline:
                        raise AssertionError("fan-out from A to B never resumed") from None
        finally:
            await listener.close()
    await assert_ranked_and_durable(shape, ledger, [first.url, second.url])


# --- PostgreSQL unreachable ------------------------------------------------------------------


async def test_postgres_stopped_then_back(shape: Shape) -> None:
    proxy = shape.proxy()
    app = shape.app("app-a", database_url=via_port(shape.database_url, proxy.port))
    ledger = Ledger()
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
        api = Api(client)
        for user in ("alice", "bob", "alice"):
            await score(api, ledger, user)
        await eventually(shape.redis_board, ledger.expected(), 10, "Redis before the outage")
        tickets = [(user, await api.issue(user)) for user in ("alice", "carol", "dave")]

        proxy.stop()
        for user, ticket in tickets:
            response = await api.complete(user, ticket)
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) > 0
        # Reads keep answering, from Redis; not ready.
        assert await leaderboard_scores(app.url) == ledger.expected()
        status, health = await _readyz(app.url)
        assert status == 503, health
        assert health["database"] == "unavailable"
        await eventually(
            lambda: _gauges(client, "scoreboard_database_up"), (0.0,), 10, "the database probe"
        )
        found = await scrape(client)
        unavailable = {"board": "global", "outcome": "service_unavailable"}
        assert value(found, "scoreboard_score_updates_total", **unavailable) == len(tickets)

        proxy.start()

        async def recovered() -> int:
            response = await api.complete(user, fresh)
            if response.status_code == 200:
                ledger.record(user, fresh)
            return response.status_code

        user, fresh = "erin", await api.issue("erin")
        await eventually(recovered, 200, RECOVERY, "an update after PostgreSQL is back")

        async def ready() -> int:  # /readyz may answer from its 1 s cache
            return (await _readyz(app.url))[0]

        await eventually(ready, 200, 5, "/readyz after PostgreSQL is back")
        await eventually(
            lambda: _gauges(client, "scoreboard_database_up"), (1.0,), 10, "the probe, back"
        )

        # Nothing of the refused updates was written, so their tickets still work once.
        database = await stored(shape.database_url)
        assert not {audit_id(ticket) for _, ticket in tickets} & database.action_ids
        for user, ticket in tickets:
            response = await api.complete(user, ticket)
            assert response.status_code == 200, response.text
            ledger.record(user, ticket)
    await assert_ranked_and_durable(shape, ledger, [app.url])


# --- SIGKILL under load ----------------------------------------------------------------------


async def test_sigkill_under_load_keeps_every_acknowledged_update(shape: Shape) -> None:
    victim, survivor = shape.app("app-a"), shape.app("app-b")
    users = [f"kill-{n:02d}" for n in range(30)]
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=survivor.url, timeout=30, limits=limits) as client:
        api = Api(client)
        issuing = asyncio.Semaphore(50)

        async def issue(user_id: str) -> tuple[str, str]:
            async with issuing:
                return user_id, await api.issue(user_id)

        tickets = await asyncio.gather(*(issue(user) for user in users for _ in range(10)))

    outcomes: list[tuple[str, str, int | None]] = []
    in_flight = asyncio.Semaphore(40)
    assert victim.process is not None
    process = victim.process
    async with httpx.AsyncClient(base_url=victim.url, timeout=30, limits=limits) as client:
        api = Api(client)

        async def complete(user_id: str, ticket: str) -> None:
            async with in_flight:
                status: int | None
                try:
                    status = (await api.complete(user_id, ticket)).status_code
                except httpx.TransportError:
                    status = None  # no answer: it may or may not have been committed
            outcomes.append((user_id, ticket, status))
            if len(outcomes) == 100:
                process.send_signal(signal.SIGKILL)

        await asyncio.gather(*(complete(user, ticket) for user, ticket in tickets))
    process.wait(timeout=10)

    ledger = Ledger()
    for user_id, ticket, status in outcomes:
        if status == 200:
            ledger.record(user_id, ticket)
    unanswered = {audit_id(ticket) for _, ticket, status in outcomes if status is None}
    refused = {audit_id(ticket) for _, ticket, status in outcomes if status not in (200, None)}
    assert ledger.acknowledged, "nothing was acknowledged before the kill"
    assert unanswered, "the kill came after every request was answered"

    victim.start()  # the restarted instance checks the cache against PostgreSQL
    database = await stored(shape.database_url)
    acknowledged = set(ledger.acknowledged)
    assert acknowledged <= database.action_ids, "an acknowledged update was lost"
    assert database.action_ids <= acknowledged | unanswered, "something else scored"
    assert not database.action_ids & refused
    assert database.scores == database.audit, "user_scores != the sum of the audit rows"
    for user_id, points in ledger.expected().items():
        assert database.scores[user_id] >= points
    for base_url in (survivor.url, victim.url):
        assert await leaderboard_scores(base_url) == database.scores
    await eventually(shape.redis_board, database.scores, RECOVERY, "Redis after the kill")


# --- Drift repair ----------------------------------------------------------------------------


async def _corrupt(shape: Shape, how: str, victim: str) -> None:
    client = shape.redis_client()
    try:
        if how == "board_deleted":
            await client.delete(shape.redis_key("leaderboard"))
        elif how == "wrong_score":
            await client.zadd(shape.redis_key("leaderboard"), {victim: 123_456}, xx=True)
        else:
            await client.hdel(shape.redis_key("users"), victim)
    finally:
        await client.aclose()


async def _seed(shape: Shape, base_url: str) -> Ledger:
    ledger = Ledger()
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        api = Api(client)
        for n, user in enumerate(("drift-a", "drift-b", "drift-c", "drift-d")):
            for _ in range(n + 1):
                await score(api, ledger, user)
    await eventually(shape.redis_board, ledger.expected(), 10, "Redis before the corruption")
    return ledger


async def _repaired(shape: Shape, base_url: str, ledger: Ledger, within: float) -> None:
    expected = ledger.expected()

    async def cache() -> tuple[dict[str, int], set[str]]:
        return await shape.redis_board(), await shape.redis_users()

    await eventually(cache, (expected, set(expected)), within, "the repaired cache")
    assert await leaderboard_scores(base_url) == expected
    await assert_ranked_and_durable(shape, ledger, [base_url])


@pytest.mark.parametrize("how", ["board_deleted", "wrong_score", "user_forgotten"])
async def test_drift_is_detected_and_repaired(shape: Shape, how: str) -> None:
    app = shape.app("app-a", SCOREBOARD_CACHE_SYNC_INTERVAL="2")
    ledger = await _seed(shape, app.url)
    await _corrupt(shape, how, "drift-c")
    assert await shape.redis_board() != ledger.expected() or how == "user_forgotten"
    await _repaired(shape, app.url, ledger, within=10)


async def test_rebuild_cache_command_repairs_on_demand(shape: Shape) -> None:
    app = shape.app("app-a")  # periodic check every 300 s: only the command repairs it
    ledger = await _seed(shape, app.url)
    await _corrupt(shape, "wrong_score", "drift-c")
    await _corrupt(shape, "user_forgotten", "drift-b")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "scoreboard", "rebuild-cache"],
        env={**os.environ, **shape.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    await _repaired(shape, app.url, ledger, within=2)
