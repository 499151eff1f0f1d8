"""Flooding: bursts against the per-user and per-address limits, fresh tokens and
rotating X-Forwarded-For to reset them, single-packet races, bots faster than the
velocity rules, and a suspended cheater. See tests/security/conftest.py."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from tests.helpers import (
    UPDATE,
    Api,
    admin_token,
    assert_refused,
    bearer,
    clean_log,
    database_of,
    flags_of,
    forge_ticket,
    make_token,
    new_user,
    now_iso,
    post_update,
    problem,
    real_client,
    stored_at,
)
from tests.live.conftest import StartServer
from tests.security.conftest import AppFactory, Shape
from tests.server import ServerProcess
from tests.tokens import fresh_token


def _policy(response: httpx.Response, name: str, quota: int, window: int) -> None:
    """The 429 carries Retry-After and the IETF draft RateLimit-Policy/RateLimit headers."""
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert response.headers["ratelimit-policy"] == f'"{name}";q={quota};w={window}'
    assert re.fullmatch(rf'"{name}";r=0;t=\d+', response.headers["ratelimit"])


async def test_a_burst_of_updates_is_cut_off_at_the_per_user_limit(app_with: AppFactory) -> None:
    async with app_with(rate_limit_updates="3/minute") as api:
        bot = new_user()
        tickets = [forge_ticket(bot) for _ in range(4)]
        for ticket in tickets[:3]:
            assert (await api.complete(bot, ticket)).status_code == 200
        before = await api.leaderboard()
        response = await api.complete(bot, tickets[3])
        await assert_refused(api, response, 429, "rate_limited", before)
        _policy(response, "updates", 3, 60)
        assert [(e["userId"], e["score"]) for e in before] == [(bot, 30)]


async def test_fresh_tokens_for_the_same_user_do_not_reset_the_per_user_limit(
    app_with: AppFactory,
) -> None:
    async with app_with(rate_limit_updates="2/minute") as api:
        bot = new_user()
        for _ in range(2):
            assert (await api.complete(bot, forge_ticket(bot))).status_code == 200
        before = await api.leaderboard()
        for token in (
            fresh_token(bot),
            fresh_token(bot, username="another name"),
            fresh_token(bot, scopes=("scores:write",)),
        ):
            response = await post_update(api, forge_ticket(bot), token)
            await assert_refused(api, response, 429, "rate_limited", before)
            _policy(response, "updates", 2, 60)


async def test_many_accounts_from_one_address_run_into_the_per_address_limit(
    app_with: AppFactory,
) -> None:
    """Sybil accounts share the attacker's address: the per-IP limit counts them together."""
    # In-process, every request comes from "testclient": keep this address's window in this
    # app's memory, so that another run within the minute cannot share it through Redis.
    async with app_with(rate_limit_ip="6/minute", rate_limit_storage="memory://") as api:
        sybils = [new_user() for _ in range(7)]
        for sybil in sybils[:6]:
            assert (await api.complete(sybil, forge_ticket(sybil))).status_code == 200
        response = await api.complete(sybils[6], forge_ticket(sybils[6]))
        problem(response, 429, "rate_limited")
        _policy(response, "ip", 6, 60)
        # The board cannot be read over HTTP now (same address): look in the database.
        assert await stored_at(database_of(api), sybils[6]) == (None, [])
        assert await stored_at(database_of(api), sybils[0]) == (10, [(10, None)])


@pytest.mark.slow
async def test_rotating_x_forwarded_for_does_not_reset_the_per_address_limit(
    start_server: StartServer, sqlite_url: str
) -> None:
    """No trusted proxy: X-Forwarded-For is the client's own word and is ignored, for the
    limits and for the audit trail alike."""
    server = start_server(SCOREBOARD_RATE_LIMIT_IP="5/minute")
    attacker = new_user()
    token = make_token(attacker)
    async with real_client(server) as client:
        responses = [
            await client.post(
                UPDATE,
                json={"actionId": forge_ticket(attacker), "timestamp": now_iso()},
                headers={**bearer(token), "X-Forwarded-For": f"203.0.113.{i}"},
            )
            for i in range(8)
        ]
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
    for response in responses[5:]:
        problem(response, 429, "rate_limited")
        _policy(response, "ip", 5, 60)
    assert all("server" not in r.headers for r in responses)
    assert await stored_at(sqlite_url, attacker) == (50, [(10, "127.0.0.1")] * 5)
    clean_log(server)


@pytest.mark.slow
async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    start_server: StartServer, sqlite_url: str
) -> None:
    """Behind a trusted proxy each forwarded client has its own limit and audit address; a
    client that prepends its own X-Forwarded-For is still counted by its real address."""
    server = start_server(
        SCOREBOARD_RATE_LIMIT_IP="5/minute", SCOREBOARD_TRUSTED_PROXIES='["127.0.0.1"]'
    )
    player = new_user()
    token = make_token(player)

    async def update(forwarded_for: str) -> httpx.Response:
        return await client.post(
            UPDATE,
            json={"actionId": forge_ticket(player), "timestamp": now_iso()},
            headers={**bearer(token), "X-Forwarded-For": forwarded_for},
        )

    async with real_client(server) as client:
        rotating = [await update(f"198.51.100.{i}") for i in range(1, 9)]
        assert [r.status_code for r in rotating] == [200] * 8
        one_client = [await update("192.0.2.9") for _ in range(5)]
        assert [r.status_code for r in one_client] == [200] * 5
        over = await update("192.0.2.9")
        problem(over, 429, "rate_limited")
        _policy(over, "ip", 5, 60)
        spoofed = await update("10.9.8.7, 192.0.2.9")  # the proxy appended the real address
        problem(spoofed, 429, "rate_limited")
    score, audit = await stored_at(sqlite_url, player)
    assert score == 130
    assert sorted(ip for _, ip in audit if ip) == sorted(
        [f"198.51.100.{i}" for i in range(1, 9)] + ["192.0.2.9"] * 5
    )
    clean_log(server)


async def test_a_bot_completing_actions_faster_than_the_rules_allow_is_blocked_and_flagged(
    app_with: AppFactory,
) -> None:
    """Scripted play, one action after another; a human next to it is untouched."""
    rules = {"actions_per_minute": {"limit": 3, "window": 60, "policy": "block"}}
    async with app_with(abuse_rules=rules) as api:
        bot, human = new_user(), new_user()
        for _ in range(3):
            assert (await api.complete(bot, forge_ticket(bot))).status_code == 200
        before = await api.leaderboard()
        response = await api.complete(bot, forge_ticket(bot))
        body = await assert_refused(api, response, 429, "velocity_exceeded", before)
        assert body["rule"] == "actions_per_minute"
        assert int(response.headers["retry-after"]) == 60
        assert len(await flags_of(api, bot, "actions_per_minute")) == 1
        assert (await api.complete(human, forge_ticket(human))).status_code == 200


async def last_byte_sync(
    server: ServerProcess, path: str, bodies: list[bytes], token: str
) -> list[tuple[int, dict[str, Any]]]:
    """The "single-packet" race: every request is sent but its last byte, then all the last
    bytes go out together, so the server sees every request complete in the same instant."""
    streams = [await asyncio.open_connection("127.0.0.1", server.port) for _ in bodies]
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    for (_, writer), request in zip(streams, requests, strict=True):
        writer.write(request[:-1])
        await writer.drain()
    await asyncio.sleep(0.3)
    for (_, writer), request in zip(streams, requests, strict=True):
        writer.write(request[-1:])
    await asyncio.gather(*(writer.drain() for _, writer in streams))
    results: list[tuple[int, dict[str, Any]]] = []
    for reader, writer in streams:
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        results.append((int(head.split()[1]), json.loads(payload)))
    return results


@pytest.mark.slow
async def test_a_bot_firing_completions_simultaneously_cannot_beat_the_velocity_block(
    start_server: StartServer, shape: Shape
) -> None:
    server = start_server(
        shape.database_url,
        SCOREBOARD_ABUSE_RULES='{"actions_per_minute": {"limit": 3, "policy": "block"}}',
        **shape.env,
    )
    bot = new_user()
    bodies = [
        json.dumps({"actionId": forge_ticket(bot), "timestamp": now_iso()}).encode()
        for _ in range(30)
    ]
    results = await last_byte_sync(server, UPDATE, bodies, make_token(bot))
    statuses = sorted(status for status, _ in results)
    score, _ = await stored_at(shape.database_url, bot)
    assert (statuses, score) == ([200] * 3 + [429] * 27, 30)
    assert {body["code"] for status, body in results if status == 429} == {"velocity_exceeded"}


@pytest.mark.slow
async def test_the_per_user_limit_holds_against_a_single_packet_race(
    start_server: StartServer, shape: Shape
) -> None:
    """The same simultaneous burst that beats the velocity rule: the rate limiter counts
    atomically (in memory, or by a Redis script), so exactly the quota gets through."""
    server = start_server(shape.database_url, SCOREBOARD_RATE_LIMIT_UPDATES="3/minute", **shape.env)
    bot = new_user()
    bodies = [
        json.dumps({"actionId": forge_ticket(bot), "timestamp": now_iso()}).encode()
        for _ in range(30)
    ]
    results = await last_byte_sync(server, UPDATE, bodies, make_token(bot))
    assert sorted(status for status, _ in results) == [200] * 3 + [429] * 27
    assert {body["code"] for status, body in results if status == 429} == {"rate_limited"}
    assert await stored_at(shape.database_url, bot) == (30, [(10, "127.0.0.1")] * 3)
    clean_log(server)


async def test_a_suspended_cheater_cannot_score(api: Api) -> None:
    cheater = new_user()
    await api.score(cheater)
    suspended = await api.client.post(
        f"/api/admin/users/{cheater}/suspend",
        json={"reason": "caught botting"},
        headers=bearer(admin_token()),
    )
    assert suspended.status_code == 200, suspended.text
    before = await api.leaderboard()
    response = await api.complete(cheater, forge_ticket(cheater))
    await assert_refused(api, response, 403, "user_suspended", before)
    response = await post_update(api, forge_ticket(cheater), fresh_token(cheater))
    await assert_refused(api, response, 403, "user_suspended", before)
