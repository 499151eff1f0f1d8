"""Secrets and identity, as an outside review attacked them (issue 12): published example
secrets, scope strings split on exotic whitespace, user ids the admin API cannot reach, JWT
edge cases that answered 500 or passed, and DNS rebinding past the WebSocket Origin check.
Each attack must be refused with the right status and change nothing. See SECURITY.md
"Tokens (JWT)" and "Secrets"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from litestar.testing import AsyncTestClient
from pydantic import SecretStr

from scoreboard.app import create_app
from scoreboard.config import InsecureSettingsError, Settings, looks_like_a_placeholder
from tests.helpers import Api, bearer, make_settings, make_token, problem
from tests.live.conftest import StartServer
from tests.live.wsclient import raw_upgrade
from tests.postgres import temporary_database
from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("scores:admin",)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "separator",
    ["\t", "\n", "\r", "\v", "\f", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u1680"],
    ids=lambda s: f"U+{ord(s):04X}",
)
async def test_a_scope_string_with_other_whitespace_grants_nothing_more(
    client: AsyncTestClient,  # type: ignore[type-arg]
    separator: str,
) -> None:
    """Only U+0020 separates scopes (RFC 6749 3.3): `read<sep>scores:admin` is one odd scope."""
    token = make_token("mallory", scope=f"leaderboard:read{separator}scores:admin")
    response = await client.get("/api/admin/flags", headers=bearer(token))
    assert problem(response, 403, "insufficient_scope")["requiredScope"] == "scores:admin"
    honest = make_token("mallory", scope="leaderboard:read scores:admin")
    assert (await client.get("/api/admin/flags", headers=bearer(honest))).status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": 10**400}, "'exp' must be a number"),
        ({"exp": str(2**31)}, "'exp' must be a number"),  # a date in 2038, as text
        ({"exp": True}, "expired"),  # True is 1: 1970
        ({"aud": []}, "another audience"),
        ({"aud": "scoreboard"}, "another audience"),
        ({"sub": "a/b"}, "'sub' must be"),
    ],
    ids=["huge-exp", "string-exp", "bool-exp", "empty-aud", "any-aud", "slash-in-sub"],
)
async def test_jwt_edge_cases_answer_401_and_score_nothing(
    client: AsyncTestClient,  # type: ignore[type-arg]
    claims: dict[str, Any],
    reason: str,
) -> None:
    token = make_token("mallory", scope="scores:write leaderboard:read", **claims)
    issued = await client.post("/api/actions", json={}, headers=bearer(token))
    assert reason in problem(issued, 401, "invalid_token")["detail"]
    board = await client.get("/api/leaderboard", headers=bearer(make_token("viewer")))
    assert board.json()["leaderboard"] == []


def _production(**secrets: str) -> Settings:
    return Settings(
        _env_file=None,
        env="production",
        jwt_secret=SecretStr(secrets["jwt"]),
        action_secret=SecretStr(secrets["action"]),
    )


def _example_secrets() -> list[str]:
    """Every secret value written in the repository's examples (README, deploy/)."""
    texts = [ROOT / "README.md", *(ROOT / "deploy").rglob("*.example"), ROOT / "SECURITY.md"]
    found = []
    for path in texts:
        for match in re.finditer(r"SCOREBOARD_\w*SECRET\w*=([^\s`'\"\\]+)", path.read_text()):
            if match[1] not in ("…", "...", "$"):
                found.append(match[1])
    return found


@pytest.mark.parametrize(
    "secret",
    [
        "change-me-to-at-least-32-random-bytes-xxxxxxxxxxxx",  # the old deploy/.env.example
        "change-me-too-at-least-32-random-bytes-yyyyyyyyyyy",
        "replace-this-with-a-long-random-string-please-123",
        "my-production-secret-key-for-the-scoreboard-2026",
        "x" * 48,
        "abababababababababababababababababababababab",
    ],
)
def test_production_refuses_example_and_placeholder_secrets(secret: str) -> None:
    real = "Vt3qF8pZ1mK9sX0bR7nC4wY6hJ2dL5gA8eU1oI3aQ9zT"
    for settings in (_production(jwt=secret, action=real), _production(jwt=real, action=secret)):
        with pytest.raises(InsecureSettingsError, match="example value"):
            settings.check_production_safety()


def test_every_secret_the_repository_shows_is_refused_and_the_generator_is_not() -> None:
    for value in _example_secrets():
        assert looks_like_a_placeholder(value), value
    result = subprocess.run(
        [sys.executable, "-m", "scoreboard", "secrets"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.split("=", 1) for line in result.stdout.split())
    assert set(lines) == {"SCOREBOARD_JWT_SECRET", "SCOREBOARD_ACTION_SECRET", "POSTGRES_PASSWORD"}
    assert len(set(lines.values())) == 3
    generated = _production(
        jwt=lines["SCOREBOARD_JWT_SECRET"], action=lines["SCOREBOARD_ACTION_SECRET"]
    )
    generated.check_production_safety()  # no error


async def _ws_close_code(server: ServerProcess, host: str, origin: str) -> int | None:
    """Upgrade with these Host and Origin headers; the close code the server sends, or None
    if it accepted and sent a first event."""
    reader, writer = await raw_upgrade(
        server, f"Origin: {origin}", f"Authorization: Bearer {make_token('victim')}", host=host
    )
    try:
        async with asyncio.timeout(10):
            while True:
                first, length = await reader.readexactly(2)
                length &= 0x7F
                if length == 126:
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                payload = await reader.readexactly(length)
                if first & 0x0F == 0x8:  # a close frame
                    return int(struct.unpack("!H", payload[:2])[0])
                if json.loads(payload)["type"] != "error":  # the refusal's reason comes first
                    return None
    finally:
        writer.close()


@pytest.mark.slow
async def test_dns_rebinding_does_not_pass_the_origin_check(start_server: StartServer) -> None:
    """A page on evil.example, whose name now points at the server, sends Origin and Host
    both evil.example: not the same origin as far as the server can trust."""
    server = start_server()
    port = server.port
    rebound = await _ws_close_code(server, f"evil.example:{port}", f"http://evil.example:{port}")
    assert rebound == 4403
    local = await _ws_close_code(server, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")
    assert local is None  # the page served by address still connects
    named = await _ws_close_code(server, f"localhost:{port}", f"http://localhost:{port}")
    assert named is None


@pytest.mark.slow
async def test_websocket_tickets_never_reach_the_log(start_server: StartServer) -> None:
    """uvicorn logs each WebSocket's path and query, before the ticket is redeemed: a
    refused socket would leave a usable ticket in the log for 30 s."""
    server = start_server(SCOREBOARD_ALLOWED_ORIGINS='["https://game.example"]')
    tickets = []
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(2):
            response = await client.post("/api/ws-ticket", headers=bearer(make_token("ann")))
            assert response.status_code == 201
            tickets.append(response.json()["ticket"])
    for ticket, origin in zip(
        tickets, ("https://evil.example", "https://game.example"), strict=True
    ):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{server.port}/ws/leaderboard?ticket={ticket}",
            origin=origin,  # type: ignore[arg-type]
        )
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        await ws.close()
    server.stop()
    log = server.log_path.read_text()
    assert "WebSocket /ws/leaderboard?ticket=[redacted]" in log  # the line is still there
    assert not [ticket for ticket in tickets if ticket in log]


@pytest.mark.parametrize(
    "path",
    [
        "/static/%00",
        "/static/page.js%00.png",
        "/api/admin/users/ann%00/history",
        "/api/leaderboard?limit=1%00",
        "/api/boards/global/leaderboard?users=ann%00",
    ],
)
async def test_a_nul_in_the_path_or_query_is_a_400_problem_never_a_500(
    client: AsyncTestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    admin = make_token("root", scopes=("scores:admin", "leaderboard:read"))
    response = await client.get(path, headers=bearer(admin))
    problem(response, 400, "validation_error")  # and no traceback


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


async def test_a_nul_in_a_body_text_on_postgres_is_a_400_and_changes_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL cannot store NUL; the admin reason went to its audit row and answered 500."""
    settings = make_settings(pg_url, tmp_path)
    async with AsyncTestClient(app=create_app(settings)) as client:
        api = Api(client)
        await api.score("ann")
        admin = bearer(make_token("root", scopes=("scores:admin", "leaderboard:read")))
        response = await client.post(
            "/api/admin/users/ann/adjust", json={"points": 5, "reason": "a\u0000b"}, headers=admin
        )
        problem(response, 400, "validation_error")
        history = await client.get("/api/admin/users/ann/history", headers=admin)
        assert history.json()["score"] == 10  # the adjustment did not happen


async def test_flag_evidence_is_bounded_whatever_the_request_carried(tmp_path: Path) -> None:
    """Evidence comes partly from the request: a 60 KB path was stored whole in every flag."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        tmp_path,
        abuse_rules={"auth_failures": {"limit": 0, "policy": "flag"}},
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        huge = "b" * 60_000
        refused = await client.get(f"/api/boards/{huge}/leaderboard", headers=bearer("junk"))
        problem(refused, 401, "invalid_token")
        admin = bearer(make_token("root", scopes=("scores:admin",)))
        flags = (await client.get("/api/admin/flags", headers=admin)).json()["flags"]
    assert [flag["rule"] for flag in flags] == ["auth_failures"]
    evidence = flags[0]["evidence"]
    assert len(json.dumps(evidence)) < 3000
    assert evidence["path"].startswith("/api/boards/bbb")
    assert len(evidence["path"]) <= 201


@pytest.mark.parametrize("points", ["5", 1.0, 1e3, True, "1e3"], ids=repr)
async def test_admin_numbers_must_be_json_integers(
    client: AsyncTestClient,  # type: ignore[type-arg]
    points: Any,
) -> None:
    """Litestar converts leniently: "5", 1.0 and 1e3 all passed as points."""
    api = Api(client)
    await api.score("ann")
    admin = bearer(make_token("root", scopes=("scores:admin", "leaderboard:read")))
    response = await client.post(
        "/api/admin/users/ann/adjust", json={"points": points, "reason": "typo fix"}, headers=admin
    )
    problem(response, 400, "validation_error")
    history = await client.get("/api/admin/users/ann/history", headers=admin)
    assert history.json()["score"] == 10
    exact = await client.post(
        "/api/admin/users/ann/adjust", json={"points": 5, "reason": "typo fix"}, headers=admin
    )
    assert exact.status_code == 200
    assert exact.json()["newScore"] == 15
