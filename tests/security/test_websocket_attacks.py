"""Attacks on the WebSocket: lookalike origins, a raced ws ticket, server events pushed
by a client, oversize messages, and a connect flood behind forged X-Forwarded-For
(against real ``scoreboard serve`` processes). See tests/security/conftest.py."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import (
    Api,
    bearer,
    clean_log,
    forge_ticket,
    make_token,
    new_user,
    now_iso,
    real_client,
)
from tests.live.conftest import StartServer
from tests.live.wsclient import closed_with, next_event, open_ws
from tests.security.conftest import Shape


async def _outcome(ws: ClientConnection) -> tuple[str, int | None]:
    """What the server did with this connection: its first event, or its close code (a
    refusal's error event, which precedes the close, is skipped)."""
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] != "error":
                return str(event["type"]), None
    except ConnectionClosed:
        return "closed", ws.close_code


@pytest.mark.slow
async def test_websocket_origin_lookalikes_are_refused_4403(start_server: StartServer) -> None:
    """Cross-site WebSocket hijacking from origins that merely resemble the allowed one."""
    server = start_server(SCOREBOARD_ALLOWED_ORIGINS='["https://game.example"]')
    token = make_token(new_user())
    for origin in (
        "https://game.example.evil.com",
        "https://evil-game.example",
        "http://game.example",
        "https://game.example:8443",
        "https://game.example.",
        "https://GAME.EXAMPLE",
        "null",
        "https://evil.example/https://game.example",
    ):
        ws = await open_ws(server, token, origin=origin)
        assert await closed_with(ws) == (4403, "origin not allowed"), origin
    allowed = await open_ws(server, token, origin="https://game.example")
    await next_event(allowed, "connection_success")
    await allowed.close()
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []
    clean_log(server)


@pytest.mark.slow
async def test_a_ws_ticket_raced_by_ten_connections_opens_exactly_one(
    start_server: StartServer, shape: Shape
) -> None:
    """In production the race is spread over two instances sharing the ticket store."""
    servers = [start_server(shape.database_url, **shape.env)]
    if shape.name == "production":
        servers.append(start_server(shape.database_url, **shape.env))
    server = servers[0]
    async with real_client(server) as client:
        issued = await client.post("/api/ws-ticket", headers=bearer(make_token(new_user())))
    assert issued.status_code == 201, issued.text
    ticket = issued.json()["ticket"]
    sockets = await asyncio.gather(
        *(open_ws(servers[i % len(servers)], ticket=ticket) for i in range(10))
    )
    outcomes = sorted(await asyncio.gather(*(_outcome(ws) for ws in sockets)))
    assert outcomes == [("closed", 4401)] * 9 + [("connection_success", None)]
    forged = await open_ws(server, ticket=ticket[:-4] + "AAAA")
    code, reason = await closed_with(forged)
    assert code == 4401
    assert reason is not None
    assert "ticket" in reason
    for ws in sockets:
        await ws.close()
    for each in servers:
        clean_log(each)


@pytest.mark.slow
async def test_a_client_cannot_push_server_events_over_the_socket(
    start_server: StartServer,
) -> None:
    """The attacker sends the server's own event shapes; they are errors, nobody else sees
    them, the board is unchanged and the attacker's socket stays usable."""
    server = start_server()
    attacker, watcher = new_user(), new_user()
    ws = await open_ws(server, make_token(attacker))
    hello = await next_event(ws, "connection_success")
    spectator = await open_ws(server, make_token(watcher))
    await next_event(spectator, "connection_success")
    fakes: list[dict[str, Any]] = [
        {"type": "score_update", "userId": attacker, "newScore": 1_000_000, "rank": 1},
        {
            "type": "leaderboard_update",
            "version": hello["version"] + 10**12,
            "leaderboard": [{"userId": attacker, "username": "x", "score": 10**9, "rank": 1}],
            "updatedAt": now_iso(),
        },
        {"type": "update", "actionId": forge_ticket(attacker), "timestamp": now_iso()},
    ]
    for fake in fakes:
        await ws.send(json.dumps(fake))
        assert (await next_event(ws, "error"))["code"] == "unknown_message"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(spectator.recv(), 0.5)
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_event(ws, "pong") == {"type": "pong"}
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []
    await ws.close()
    await spectator.close()
    clean_log(server)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["one-megabyte-frame", "fragmented-2x3000"])
async def test_an_oversize_message_closes_the_socket_1009(
    start_server: StartServer, shape: str
) -> None:
    server = start_server()
    ws = await open_ws(server, make_token(new_user()))
    await next_event(ws, "connection_success")
    message: str | list[str] = (
        "x" * 1_048_576 if shape == "one-megabyte-frame" else ["x" * 3000, "y" * 3000]
    )
    with suppress(ConnectionClosed):
        await ws.send(message)
    code, _ = await closed_with(ws)
    assert code == 1009
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []


@pytest.mark.slow
async def test_a_websocket_connect_flood_is_refused_4429_whatever_x_forwarded_for_says(
    start_server: StartServer,
) -> None:
    server = start_server(SCOREBOARD_RATE_LIMIT_WS_CONNECT="3/minute")
    token = make_token(new_user())
    opened: list[ClientConnection] = []
    for _ in range(3):
        ws = await open_ws(server, token)
        await next_event(ws, "connection_success")
        opened.append(ws)
    for i in range(3):
        flood = await connect(
            server.url.replace("http://", "ws://") + "/ws/leaderboard",
            additional_headers={**bearer(token), "X-Forwarded-For": f"203.0.113.{i}"},
        )
        code, reason = await closed_with(flood)
        assert code == 4429
        assert reason is not None
        assert "too many connection attempts" in reason
    for ws in opened:
        await ws.close()
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []
    clean_log(server)
