"""/ws/leaderboard against a real server process over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scoreboard.app import create_app
from scoreboard.protocols import RawSend
from tests.helpers import Api, bearer, make_settings, make_token, scrape, value
from tests.live.conftest import StartServer
from tests.live.wsclient import closed_with, next_event, open_ws, ws_url
from tests.server import ServerProcess, served

pytestmark = pytest.mark.slow


async def _score(server: ServerProcess, user: str, kind: str | None = None) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await Api(client).score(user, kind)


async def test_connect_then_receive_the_board_and_your_own_score(start_server: StartServer) -> None:
    server = start_server()
    await _score(server, "rival", "big")
    ws = await open_ws(server, make_token("alice", username="Alice"))
    hello = await next_event(ws, "connection_success")
    assert hello["userId"] == "alice"
    assert [e["userId"] for e in hello["leaderboard"]] == ["rival"]
    watcher = await open_ws(server, make_token("bob"))
    await next_event(watcher, "connection_success")

    result = await _score(server, "alice")
    mine = await next_event(ws, "score_update")
    assert mine == {
        "type": "score_update",
        "board": "global",
        "period": "all",
        "userId": "alice",
        "newScore": 10,
        "rank": 2,
    }
    assert mine["newScore"] == result["newScore"]
    board = await next_event(watcher, "leaderboard_update")
    assert board["version"] > hello["version"]
    assert [(e["userId"], e["score"], e["rank"]) for e in board["leaderboard"]] == [
        ("rival", 100, 1),
        ("alice", 10, 2),
    ]
    await ws.close()
    await watcher.close()


async def test_a_ws_ticket_works_once(start_server: StartServer) -> None:
    server = start_server()
    token = make_token("carol")
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/api/ws-ticket", headers=bearer(token))
    assert response.status_code == 201
    ticket = response.json()["ticket"]
    ws = await open_ws(server, ticket=ticket)
    assert (await next_event(ws, "connection_success"))["userId"] == "carol"
    again = await open_ws(server, ticket=ticket)
    code, reason = await closed_with(again)
    assert code == 4401
    assert reason is not None
    assert "ticket" in reason
    await ws.close()


@pytest.mark.parametrize(
    ("token", "code", "words"),
    [
        (None, 4401, "Bearer"),
        ("not-a-jwt", 4401, "malformed"),
        (make_token("eve", secret="some-other-secret-that-is-long-enough-1234"), 4401, "signature"),
        (make_token("eve", ttl=-60), 4401, "expired"),
        (make_token("eve", scopes=("scores:write",)), 4403, "leaderboard:read"),
    ],
)
async def test_bad_auth_is_refused_with_a_reason_and_others_are_served(
    start_server: StartServer, token: str | None, code: int, words: str
) -> None:
    server = start_server()
    refused = await open_ws(server, token)
    close_code, reason = await closed_with(refused)
    assert close_code == code
    assert reason is not None
    assert words in reason
    fine = await open_ws(server, make_token("frank"))
    assert (await next_event(fine, "connection_success"))["userId"] == "frank"
    await fine.close()


async def test_origin_must_be_allowed(start_server: StartServer) -> None:
    server = start_server(SCOREBOARD_ALLOWED_ORIGINS='["https://game.example"]')
    token = make_token("gina")
    hijack = await open_ws(server, token, origin="https://evil.example")
    assert await closed_with(hijack) == (4403, "origin not allowed")
    allowed = await open_ws(server, token, origin="https://game.example")
    await next_event(allowed, "connection_success")
    same_site = await open_ws(server, token, origin=server.url)
    await next_event(same_site, "connection_success")
    await allowed.close()
    await same_site.close()


async def test_the_connection_closes_when_the_token_expires(start_server: StartServer) -> None:
    server = start_server()
    ws = await open_ws(server, make_token("hank", ttl=2))
    await next_event(ws, "connection_success")
    assert await closed_with(ws, wait_up_to=10) == (1008, "token expired")


async def test_bad_frames_get_errors_and_oversize_frames_close_1009(
    start_server: StartServer,
) -> None:
    server = start_server()
    ws = await open_ws(server, make_token("ivy"))
    await next_event(ws, "connection_success")
    await ws.send("{not json")
    assert (await next_event(ws, "error"))["code"] == "malformed_message"
    await ws.send(json.dumps({"type": "launch_missiles"}))
    assert (await next_event(ws, "error"))["code"] == "unknown_message"
    await ws.send(b"\x00\x01binary")
    assert (await next_event(ws, "error"))["code"] == "malformed_message"
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_event(ws, "pong") == {"type": "pong"}
    await ws.send(json.dumps({"type": "resync"}))
    assert "version" in await next_event(ws, "leaderboard_update")
    await ws.send("x" * 5000)
    code, _ = await closed_with(ws)
    assert code == 1009


async def test_inbound_messages_are_rate_limited(start_server: StartServer) -> None:
    server = start_server(SCOREBOARD_WS_MESSAGES_PER_SECOND="1", SCOREBOARD_WS_MESSAGE_BURST="5")
    ws = await open_ws(server, make_token("jack"))
    await next_event(ws, "connection_success")
    for _ in range(8):
        await ws.send(json.dumps({"type": "ping"}))
    replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(8)]
    assert [r["type"] for r in replies].count("pong") == 5
    assert [r.get("code") for r in replies if r["type"] == "error"] == ["rate_limited"] * 3
    for _ in range(10):
        await ws.send(json.dumps({"type": "ping"}))
    code, reason = await closed_with(ws)
    assert (code, reason) == (1008, "too many messages")


async def test_connections_per_user_are_capped(start_server: StartServer) -> None:
    server = start_server(SCOREBOARD_WS_MAX_PER_USER="2")
    token = make_token("kim")
    first, second = await open_ws(server, token), await open_ws(server, token)
    for ws in (first, second):
        await next_event(ws, "connection_success")
    third = await open_ws(server, token)
    code, reason = await closed_with(third)
    assert code == 4429
    assert reason is not None
    assert "per user" in reason
    await first.close()
    for _ in range(50):  # the server frees the slot once it has seen the close
        replacement = await open_ws(server, token)
        try:
            await next_event(replacement, "connection_success")
            break
        except ConnectionClosed:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the closed connection's slot was never freed")


async def test_two_hundred_clients_all_end_on_the_same_latest_version(
    start_server: StartServer,
) -> None:
    server = start_server(SCOREBOARD_WS_MAX_PER_IP="1000")
    clients = []
    for batch in range(4):
        opened = await asyncio.gather(
            *(open_ws(server, make_token(f"viewer-{batch}-{i}")) for i in range(50))
        )
        clients.extend(opened)
    await asyncio.gather(*(next_event(ws, "connection_success") for ws in clients))
    for i in range(5):
        await _score(server, f"player-{i}", "big")
    final_board = [(f"player-{i}", 100) for i in range(5)]

    async def last_version(ws: object) -> int:
        while True:
            event = await next_event(ws, "leaderboard_update")  # type: ignore[arg-type]
            if [(e["userId"], e["score"]) for e in event["leaderboard"]] == final_board:
                version: int = event["version"]
                return version

    versions = await asyncio.gather(*(last_version(ws) for ws in clients))
    assert len(versions) == 200
    assert len(set(versions)) == 1
    await asyncio.gather(*(ws.close() for ws in clients))


async def test_a_client_that_never_reads_does_not_hold_up_the_others(
    start_server: StartServer,
) -> None:
    """Boards of up to ~35 KB, 340 of them: far more than the kernel buffers of a client that has
    stopped reading. The readers must get every board; the server must drop the sloth, by
    its send timeout: the protocol pings are pushed out of reach (600 s), so a sender that
    only logged a timeout and carried on would leave the sloth open and fail this test."""
    server = start_server(
        SCOREBOARD_WS_SEND_TIMEOUT="1",
        SCOREBOARD_LIVE_TOP_N="100",
        SCOREBOARD_BROADCAST_INTERVAL="0.01",
        SCOREBOARD_WS_PING_INTERVAL="600",
        SCOREBOARD_WS_PING_TIMEOUT="600",
    )
    stuck = _raw_websocket_that_never_reads(server.port, make_token("sloth"))
    readers = [await open_ws(server, make_token(f"reader-{i}")) for i in range(3)]
    for ws in readers:
        await next_event(ws, "connection_success")
    users = [f"p{i:03d}-{'x' * 30}" for i in range(100)]
    tokens = {user: make_token(user, username=user + "-" + "y" * 250) for user in users}
    async with httpx.AsyncClient(base_url=server.url) as client:
        api = Api(client, tokens)
        # 100 newcomers, then leaps to the top: ~9 MB of boards, twice the most the kernel
        # buffers on both sides can hold for the sloth.
        for i in range(340):
            user = users[i % 100]
            score = (await api.score(user, "big"))["newScore"]
            boards = [await next_event(ws, "leaderboard_update") for ws in readers]
            for board in boards:
                assert {"userId": user, "score": score} in [
                    {"userId": e["userId"], "score": e["score"]} for e in board["leaderboard"]
                ]
    log = server.log_path.read_text()
    assert "ws_client_too_slow" in log
    stuck.settimeout(10)  # far below the ping timeout: only the sender's close ends this
    while stuck.recv(65536):  # everything the server managed to send, then its close
        pass
    stuck.close()
    async with httpx.AsyncClient(base_url=server.url) as client:
        found = await scrape(client)
    assert value(found, "scoreboard_ws_slow_closes_total") == 1
    assert value(found, "scoreboard_ws_closes_total", code="1013") == 1
    assert value(found, "scoreboard_ws_connections") == len(readers)


def _raw_websocket_that_never_reads(port: int, token: str) -> socket.socket:
    """A hand-made WebSocket handshake on a socket with a tiny receive buffer; after the
    101 response nothing is read again, so the server's sends back up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/leaderboard HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def test_a_dead_peer_is_dropped_by_protocol_heartbeats(start_server: StartServer) -> None:
    server = start_server(SCOREBOARD_WS_PING_INTERVAL="0.5", SCOREBOARD_WS_PING_TIMEOUT="1")
    alive = await open_ws(server, make_token("alive"))  # the library answers pings
    await next_event(alive, "connection_success")
    dead = _raw_websocket_that_never_reads(server.port, make_token("dead"))
    dead.setblocking(False)
    loop = asyncio.get_running_loop()

    async def until_eof() -> None:
        while await loop.sock_recv(dead, 65536):  # reads the pings, never answers them
            pass

    await asyncio.wait_for(until_eof(), 15)
    dead.close()
    await alive.send(json.dumps({"type": "ping"}))
    assert await next_event(alive, "pong") == {"type": "pong"}
    await alive.close()


async def test_shutdown_closes_sockets_with_1001(start_server: StartServer) -> None:
    server = start_server()
    ws = await open_ws(server, make_token("last"))
    await next_event(ws, "connection_success")
    server.stop(signal.SIGTERM)
    code, _ = await closed_with(ws)
    assert code == 1001


async def test_connection_attempts_per_address_are_rate_limited(start_server: StartServer) -> None:
    server = start_server(SCOREBOARD_RATE_LIMIT_WS_CONNECT="3/minute")
    token = make_token("flood")
    for _ in range(3):
        ws = await open_ws(server, token)
        await next_event(ws, "connection_success")
        await ws.close()
    refused = await open_ws(server, token)
    code, reason = await closed_with(refused)
    assert code == 4429
    assert reason is not None
    assert reason.startswith("too many connection attempts")


async def _refusal(ws: ClientConnection) -> tuple[str | None, int | None]:
    """The error event's code sent before the close (None if none came), and the close code."""
    code: str | None = None
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] == "error":
                code = event["code"]
    except ConnectionClosed:
        return code, ws.close_code


async def test_every_refusal_after_the_upgrade_sends_an_error_event_before_the_close(
    start_server: StartServer,
) -> None:
    """The spec's error event: a client tells "get a new ticket" from "back off" from "no such
    board" by its code, not by parsing close reasons."""
    server = start_server(
        SCOREBOARD_ALLOWED_ORIGINS='["https://game.example"]', SCOREBOARD_WS_MESSAGE_BURST="2"
    )
    cases = {
        "unauthorized": (await open_ws(server, "not-a-token"), 4401),
        "forbidden": (await open_ws(server, make_token("o"), origin="https://evil.example"), 4403),
        "unknown_board": (
            await connect(
                ws_url(server) + "?board=nope",
                additional_headers={"Authorization": f"Bearer {make_token('p')}"},
            ),
            4404,
        ),
    }
    for expected, (ws, close_code) in cases.items():
        assert await _refusal(ws) == (expected, close_code), expected
    flooder = await open_ws(server, make_token("q"))
    await next_event(flooder, "connection_success")
    for _ in range(20):
        with contextlib.suppress(ConnectionClosed):
            await flooder.send(json.dumps({"type": "ping"}))
    assert await _refusal(flooder) == ("rate_limited", 1008)
    expiring = await open_ws(server, make_token("r", ttl=2))
    await next_event(expiring, "connection_success")
    assert await _refusal(expiring) == ("token_expired", 1008)


async def test_boards_reach_real_sockets_written_raw_once_per_broadcast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our uvicorn protocol's raw send, in this process (so its writes can be counted): every
    follower gets each board as a frame the websockets client reads, and the frames were
    written straight to the transports (a server that offered no raw send, or a connection
    that never used it, fails the count)."""
    written: list[int] = []
    write = RawSend.write

    def counted(self: RawSend, frame: bytes) -> bool:
        done = write(self, frame)
        written.append(len(frame) if done else -1)
        return done

    monkeypatch.setattr(RawSend, "write", counted)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    async with served(create_app(settings), settings) as url:
        followers = []
        for i in range(5):
            ws = await connect(
                url.replace("http://", "ws://") + "/ws/leaderboard",
                additional_headers=bearer(make_token(f"viewer-{i}")),
            )
            await next_event(ws, "connection_success")
            followers.append(ws)
        async with httpx.AsyncClient(base_url=url) as client:
            await Api(client).score("climber", "big")
        boards = [await next_event(ws, "leaderboard_update") for ws in followers]
        assert all(b["leaderboard"][0]["userId"] == "climber" for b in boards)
        assert len([n for n in written if n > 0]) >= len(followers)
        for ws in followers:
            await ws.close()
