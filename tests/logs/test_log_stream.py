"""What a real `scoreboard serve` process writes: in production one JSON object a line (uvicorn's
own lines included), an access line per request with its route template, status, duration,
user and request id, and never a token or a ticket; in dev, readable console lines."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.helpers import bearer, make_token, real_client, settings_env
from tests.live.wsclient import closed_with, ws_url
from tests.server import ServerProcess

pytestmark = pytest.mark.slow

BOARD = "/api/boards/global/leaderboard"
BOARD_ROUTE = "/api/boards/{board}/leaderboard"
GENERATED = re.compile(r"[0-9a-f]{32}")
UNAUTHORIZED = 4401


def start(tmp_path: Path, **env: str) -> ServerProcess:
    """A server on its own SQLite file; its stdout and stderr both go to ``log_path``."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"
    return ServerProcess(settings_env(database, tmp_path, **env), tmp_path / "server.log").start()


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line of the output, each of which must be one JSON object."""
    records = []
    for line in server.log_path.read_text().splitlines():
        record = json.loads(line)  # raises on a line that is not JSON
        assert isinstance(record, dict), line
        assert {"event", "level", "timestamp"} <= record.keys(), line
        records.append(record)
    return records


async def test_production_writes_one_json_object_a_line_and_no_secret(tmp_path: Path) -> None:
    server = start(tmp_path, SCOREBOARD_ENV="production")
    token = make_token("ann")
    forged = make_token("ann", secret="another-key-that-is-long-enough-0123456789")
    unrouted = f"/api/nope-{uuid.uuid4().hex}"
    malformed = [b"x" * 129, b"has space", b'q"}{"level":"critical', b"caf\xc3\xa9"]
    try:
        async with real_client(server) as client:
            read = await client.get(
                f"{BOARD}?ticket=secret123&token=secret456",
                headers={**bearer(token), "X-Request-ID": "trace-42.a:b_c"},
            )
            refused = await client.get(BOARD, headers=bearer(forged))
            missing = await client.get(f"{unrouted}?ticket=secret123")
            replaced = [
                await client.get("/healthz", headers={b"X-Request-ID": sent}) for sent in malformed
            ]
        ws = await connect(
            ws_url(server, "secret-ws-ticket-123"),
            additional_headers={"X-Request-ID": "ws-trace-1"},
            open_timeout=10,
        )
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "ws-trace-1"
        assert (await closed_with(ws))[0] == UNAUTHORIZED
    finally:
        server.stop()
    assert [read.status_code, refused.status_code, missing.status_code] == [200, 401, 404]

    records = json_lines(server)
    uvicorn = [r["event"] for r in records if r.get("logger") == "uvicorn.error"]
    assert "Application startup complete." in uvicorn
    assert any(e.startswith("Started server process") for e in uvicorn)
    assert any("WebSocket /ws/leaderboard?ticket=[redacted]" in e for e in uvicorn)
    access = {r["request_id"]: r for r in records if r["event"] == "request"}

    assert read.headers["x-request-id"] == "trace-42.a:b_c"
    line = access["trace-42.a:b_c"]
    assert line["route"] == BOARD_ROUTE
    assert (line["method"], line["status"], line["user_id"]) == ("GET", 200, "ann")
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "info"

    line = access[refused.headers["x-request-id"]]
    assert (line["route"], line["status"], line["user_id"]) == (BOARD_ROUTE, 401, None)
    line = access[missing.headers["x-request-id"]]
    assert (line["route"], line["status"]) == ("unmatched", 404)

    for response in replaced:
        returned = response.headers["x-request-id"]
        assert GENERATED.fullmatch(returned)
        assert access[returned]["route"] == "/healthz"

    (socket,) = [r for r in records if r["event"] == "websocket"]
    assert socket["request_id"] == "ws-trace-1"
    assert socket["route"] == "/ws/leaderboard"
    assert (socket["outcome"], socket["close_code"]) == ("accepted", UNAUTHORIZED)

    log = server.log_path.read_text()
    for secret in ("secret123", "secret456", "secret-ws-ticket-123", token, forged, unrouted):
        assert secret not in log
    # The malformed ids are nowhere, not even escaped as JSON would.
    for sent in ("x" * 129, "has space", "critical", "caf\u00e9", "caf\\u00e9"):
        assert sent not in log


def test_dev_writes_readable_console_lines(tmp_path: Path) -> None:
    server = start(tmp_path)  # SCOREBOARD_ENV=dev
    try:
        response = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "dev-trace-1"})
    finally:
        server.stop()
    assert response.headers["x-request-id"] == "dev-trace-1"
    lines = server.log_path.read_text().splitlines()
    for line in lines:
        with pytest.raises(ValueError, match=r"Expecting value|Extra data"):
            json.loads(line)
    (access,) = [line for line in lines if "request_id=dev-trace-1" in line]
    assert " request " in access
    assert "route=/healthz" in access
    assert "status=200" in access
    assert any("Application startup complete." in line for line in lines)
    assert any("[uvicorn.error]" in line for line in lines)
