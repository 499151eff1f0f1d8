"""``/metrics``: exact counts after known traffic, on every backend and in real processes of
both shapes, in a format promtool accepts; outside rate limits and tokens; on its own port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from tests.conftest import Backend
from tests.helpers import (
    Api,
    bearer,
    forge_ticket,
    make_token,
    new_user,
    problem,
    samples,
    scrape,
    value,
)
from tests.live.conftest import StartServer
from tests.live.wsclient import next_event, open_ws
from tests.monitoring.support import promtool
from tests.production.conftest import Shape
from tests.server import ServerProcess, free_port


async def known_traffic(api: Api, accepted: int, replays: int) -> None:
    """``accepted`` updates by two users, ``replays`` of one used ticket, one forged ticket and
    one request with a broken token."""
    users = [new_user(), new_user()]
    used = ""
    for i in range(accepted):
        used = await api.issue(users[i % 2])
        response = await api.complete(users[i % 2], used)
        assert response.status_code == 200, response.text
    for _ in range(replays):
        problem(await api.complete(users[(accepted - 1) % 2], used), 409, "action_already_used")
    forged = forge_ticket(users[0], action_secret="not-the-service-secret-" + "x" * 20)
    problem(await api.complete(users[0], forged), 422, "invalid_action")
    response = await api.client.get("/api/leaderboard", headers=bearer("not.a.token"))
    problem(response, 401, "invalid_token")


async def test_a_scrape_counts_exactly_what_happened(
    client: AsyncTestClient[Any], api: Api, backend: Backend
) -> None:
    await known_traffic(api, accepted=5, replays=4)
    await api.leaderboard()
    found = await scrape(client)

    updates = "scoreboard_score_updates_total"
    assert value(found, updates, board="global", outcome="accepted") == 5
    assert value(found, updates, board="global", outcome="action_already_used") == 4
    assert value(found, updates, board="none", outcome="invalid_action") == 1
    assert value(found, "scoreboard_auth_failures_total") == 1
    # The fourth replay passes the rule's limit of three: one flag.
    assert value(found, "scoreboard_abuse_flags_total", rule="ticket_replay") == 1
    assert value(found, "scoreboard_abuse_flags_total", rule="forged_ticket") == 1
    # Every update was timed at each stage it reached; the writer committed each once.
    stage = "scoreboard_update_stage_seconds_count"
    assert value(found, stage, stage="ticket") == 5 + 4 + 1
    assert value(found, stage, stage="velocity") == 5 + 4
    assert value(found, stage, stage="ranking") == 5
    assert value(found, "scoreboard_write_batch_size_sum") == 5 + 4
    assert value(found, "scoreboard_database_up") == 1
    assert value(found, "scoreboard_build_info", version=_version(), shape=_shape(backend)) == 1
    if backend.redis_url:
        assert value(found, "scoreboard_redis_up") == 1
        reads = "scoreboard_cache_reads_total"
        assert (value(found, reads, operation="top", result="hit") or 0) >= 1
        for result in ("miss", "fallback"):
            assert value(found, reads, operation="top", result=result) == 0
            assert value(found, reads, operation="rank", result=result) == 0
    else:
        assert value(found, "scoreboard_redis_up") is None  # no Redis to be down


def _version() -> str:
    from scoreboard import __version__

    return __version__


def _shape(backend: Backend) -> str:
    return "production" if backend.redis_url else "embedded"


async def test_http_latency_is_labelled_by_route_template_never_by_path(
    client: AsyncTestClient[Any], api: Api
) -> None:
    user = new_user()
    await api.score(user)
    secret_path = f"/api/boards/{user}-zzz/leaderboard"
    response = await client.get(secret_path, headers=bearer(api.token("reader")))
    problem(response, 404, "board_not_found")
    text = (await client.get("/metrics")).text
    assert user not in text, "a user id reached a label"
    found = samples(text)
    duration = "scoreboard_http_request_duration_seconds_count"
    assert value(found, duration, method="POST", route="/api/scores/update", status="200") == 1
    assert (
        value(found, duration, method="GET", route="/api/boards/{board}/leaderboard", status="404")
        == 1
    )


@pytest.mark.one_backend
async def test_the_scrape_is_outside_rate_limits_and_tokens(
    backend: Backend, tmp_path: Path
) -> None:
    app = create_app(backend.settings(tmp_path, rate_limit_ip="3/minute"))
    async with AsyncTestClient(app=app) as client:
        for _ in range(10):
            response = await client.get("/metrics", headers=bearer("forged.token.here"))
            assert response.status_code == 200, response.text
        counted = [(await client.get("/api/boards")).status_code for _ in range(4)]
        assert counted == [401, 401, 401, 429]  # the limit is live for everything else
        found = samples((await client.get("/metrics")).text)
        assert value(found, "scoreboard_rate_limited_total", limit="ip") == 1
        assert value(found, "scoreboard_auth_failures_total") == 0  # the scrape's bad token


# --- Real processes ------------------------------------------------------------------------


def promtool_check(text: str) -> None:
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout  # no lint warnings


async def _eventually(check: Callable[[], Any], wait: float = 10) -> None:
    for _ in range(int(wait / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    assert await check()


async def _exact_counts_of(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        api = Api(client)
        await known_traffic(api, accepted=6, replays=3)
        sockets = [await open_ws(server, make_token(f"viewer-{i}")) for i in range(3)]
        for ws in sockets:
            await next_event(ws, "connection_success")
        found = await scrape(client)
        assert value(found, "scoreboard_ws_connections") == 3
        assert value(found, "scoreboard_ws_connects_total") == 3
        for ws in sockets:
            await ws.close()

        async def all_closed() -> bool:
            found = await scrape(client)
            return value(found, "scoreboard_ws_closes_total", code="1000") == 3

        await _eventually(all_closed)
        response = await client.get("/metrics")
        found = samples(response.text)
        updates = "scoreboard_score_updates_total"
        assert value(found, updates, board="global", outcome="accepted") == 6
        assert value(found, updates, board="global", outcome="action_already_used") == 3
        assert value(found, "scoreboard_ws_connections") == 0
        assert value(found, "scoreboard_ws_connects_total") == 3
        promtool_check(response.text)


@pytest.mark.slow
async def test_a_real_embedded_server_counts_exactly(start_server: StartServer) -> None:
    await _exact_counts_of(start_server())


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_real_production_server_counts_exactly(shape: Shape) -> None:
    await _exact_counts_of(shape.app("metrics"))


@pytest.mark.slow
async def test_the_metrics_port_keeps_the_scrape_off_the_public_listener(
    start_server: StartServer,
) -> None:
    port = free_port()
    server = start_server(SCOREBOARD_METRICS_PORT=str(port))
    async with httpx.AsyncClient(timeout=10) as client:
        public = await client.get(f"{server.url}/metrics")
        assert public.status_code == 404
        private = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert private.status_code == 200
    assert "scoreboard_build_info" in private.text
    promtool_check(private.text)
