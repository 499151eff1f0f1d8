"""What many tests share: settings, tokens, forged tickets, a small API client, the problem
document check, and the attack suite's ways of reading what a refusal left behind. Tokens
built by hand (tampered, unsigned, RS256, JWKS) are in tests/tokens.py."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from litestar import Litestar
from litestar.types import Receive, Scope, Send
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.actions.catalog import ActionType, load_catalog
from scoreboard.actions.tickets import TicketSigner
from scoreboard.auth.principal import DEFAULT_USER_SCOPES
from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.service import BoardRegistry
from scoreboard.clock import Clock, system_clock
from scoreboard.config import Settings
from scoreboard.database import create_engine
from scoreboard.keys import load_keys
from scoreboard.records import ScoreEvent
from scoreboard.tables import score_updates, user_scores
from tests.server import ServerProcess

JWT_SECRET = "test-jwt-key-that-is-long-enough-0123456789"
ACTION_SECRET = "test-action-key-that-is-long-enough-0123456789"
ACTIONS_FILE = Path(__file__).parent / "actions.toml"
# Rate limits high enough that only the tests about limits ever meet them.
RATE_SETTINGS = (
    "rate_limit_ip",
    "rate_limit_actions",
    "rate_limit_updates",
    "rate_limit_ws_connect",
)
GENEROUS = "1000000/minute"
USER_SCOPES = tuple(scope.value for scope in DEFAULT_USER_SCOPES)
ADMIN_ID = "admin-root"
PROBLEM_JSON = "application/problem+json"
UPDATE = "/api/scores/update"
BATCH = "/api/scores/batch"
ACTIONS = "/api/actions"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
PEER_HEADER = "x-test-peer"

Board = list[dict[str, Any]]  # GET /api/leaderboard's entries


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "dev",
        "data_dir": data_dir,
        "database_url": database_url,
        "auto_migrate": True,
        "jwt_secret": JWT_SECRET,
        "action_secret": ACTION_SECRET,
        "actions_file": ACTIONS_FILE,
        **{name: GENEROUS for name in RATE_SETTINGS},
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def settings_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The same settings as environment variables, for server processes."""
    env = {
        "SCOREBOARD_ENV": "dev",
        "SCOREBOARD_DATA_DIR": str(data_dir),
        "SCOREBOARD_DATABASE_URL": database_url,
        "SCOREBOARD_AUTO_MIGRATE": "true",
        "SCOREBOARD_JWT_SECRET": JWT_SECRET,
        "SCOREBOARD_ACTION_SECRET": ACTION_SECRET,
        "SCOREBOARD_ACTIONS_FILE": str(ACTIONS_FILE),
        **{f"SCOREBOARD_{name.upper()}": GENEROUS for name in RATE_SETTINGS},
    }
    env.update(overrides)
    return env


async def board_registry(
    engine: AsyncEngine, actions_file: Path | None = ACTIONS_FILE, clock: Clock = system_clock
) -> BoardRegistry:
    """The boards of a catalog file merged with the database's, as the service loads them."""
    catalog = load_catalog(actions_file)
    registry = BoardRegistry(catalog.boards, catalog.feeds, BoardRepository(engine), clock)
    await registry.start(refresh=False)
    return registry


def make_token(
    user_id: str,
    *,
    username: str | None = None,
    scopes: tuple[str, ...] = USER_SCOPES,
    ttl: int = 600,
    secret: str = JWT_SECRET,
    **claims: Any,
) -> str:
    now = int(datetime.now(UTC).timestamp())
    payload: dict[str, Any] = {
        "sub": user_id,
        "exp": now + ttl,
        "iat": now,
        "scope": " ".join(scopes),
    }
    if username:
        payload["preferred_username"] = username
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


@functools.cache
def _signer(action_secret: str) -> TicketSigner:
    settings = make_settings("sqlite+aiosqlite://", Path("."), action_secret=action_secret)
    return TicketSigner(load_keys(settings))


def forge_ticket(
    user_id: str,
    *,
    points: int = 10,
    issued_at: datetime | None = None,
    min_duration: float = 0,
    ttl: float = 60,
    action_secret: str = ACTION_SECRET,
) -> str:
    """A ticket signed with a chosen key and window: valid when the key is the service's."""
    signer = _signer(action_secret)
    action = ActionType(name="instant", points=points, min_duration=min_duration, ttl=ttl)
    token, _ = signer.issue(user_id, action, issued_at or datetime.now(UTC))
    return token


def admin_token() -> str:
    return make_token(ADMIN_ID, scopes=("scores:admin", "leaderboard:read"))


def now_iso(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


class MovableClock:
    """The real clock, shifted: it runs on as time passes, and a test can jump it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = timedelta(0)
        if start is not None:
            self.set(start)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, instant: datetime) -> None:
        self.offset = instant - datetime.now(UTC)

    def move(self, delta: timedelta) -> None:
        self.offset += delta


def on_global(score: int, rank: int) -> dict[str, Any]:
    """What a score update answers, past the spec's fields, for an action feeding only the
    global board: its one board result."""
    return {"boards": [{"board": "global", "period": "all", "score": score, "rank": rank}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    """Thin helpers over an httpx client (in-process or against a real server)."""

    client: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)
    clock: Clock = system_clock  # the service's: timestamps must agree with it

    def token(self, user_id: str) -> str:
        if user_id not in self.tokens:
            self.tokens[user_id] = make_token(user_id, username=f"name-{user_id}")
        return self.tokens[user_id]

    async def issue(self, user_id: str, action_type: str | None = None) -> str:
        body = {} if action_type is None else {"type": action_type}
        response = await self.client.post(
            "/api/actions", json=body, headers=bearer(self.token(user_id))
        )
        assert response.status_code == 201, response.text
        action_id: str = response.json()["actionId"]
        return action_id

    async def complete(
        self, user_id: str, action_id: str, timestamp: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/api/scores/update",
            json={"actionId": action_id, "timestamp": timestamp or self.clock().isoformat()},
            headers=bearer(self.token(user_id)),
        )

    async def score(self, user_id: str, action_type: str | None = None) -> dict[str, Any]:
        response = await self.complete(user_id, await self.issue(user_id, action_type))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def issue_for(
        self, user_id: str, action_type: str, value: int | None = None, *, by: str = "backend"
    ) -> str:
        """A ticket issued by a trusted backend (``actions:issue``), optionally with a value."""
        token = make_token(by, scopes=("actions:issue",))
        body: dict[str, Any] = {"type": action_type, "userId": user_id}
        if value is not None:
            body["value"] = value
        response = await self.client.post("/api/actions", json=body, headers=bearer(token))
        assert response.status_code == 201, response.text
        action_id: str = response.json()["actionId"]
        return action_id

    async def board(self, board: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/boards/{board}/leaderboard",
            params=params,
            headers=bearer(self.token("reader")),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def leaderboard(self, limit: int = 100) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/api/leaderboard", params={"limit": limit}, headers=bearer(self.token("reader"))
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["leaderboard"]
        return entries


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


class Peer:
    """Lets a test choose the client address (the test client always says "testclient",
    which is no IP address): a request's ``x-test-peer`` header becomes its peer."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == PEER_HEADER.encode():
                    scope["client"] = (value.decode(), 40_000)
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- refusals


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status and stable ``code``
    (and no traceback); its body is returned for further checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert body["type"] == f"urn:scoreboard:problem:{code}", body
    assert "Traceback" not in response.text
    return body


# A replay is 409 - or, past a blocking velocity rule, refused before the database with 429.
REPLAY_REFUSALS: dict[int, str] = {409: "action_already_used", 429: "velocity_exceeded"}


def problem_by_status(response: httpx.Response, codes: Mapping[int, str]) -> dict[str, Any]:
    """The response is one of several problems, each status with its own ``code`` (see
    ``problem``): for refusals whose status depends on a race, such as REPLAY_REFUSALS."""
    assert response.status_code in codes, (sorted(codes), response.text)
    return problem(response, response.status_code, codes[response.status_code])


async def assert_refused(
    api: Api, response: httpx.Response, status: int, code: str, before: Board | None = None
) -> dict[str, Any]:
    """The attack got the expected problem, and the leaderboard is exactly as before (empty,
    unless ``before`` says otherwise)."""
    body = problem(response, status, code)
    assert await api.leaderboard() == (before or []), "a refused attack changed the leaderboard"
    return body


async def post_update(
    api: Api,
    action_id: str,
    token: str,
    *,
    timestamp: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /api/scores/update with this ticket and token (and a timestamp of now)."""
    return await api.client.post(
        UPDATE,
        json={"actionId": action_id, "timestamp": timestamp or now_iso()},
        headers={**bearer(token), **(headers or {})},
    )


def game_server(name: str = "game-server") -> str:
    """A trusted game server's token (``scores:submit``): it completes its players' tickets."""
    return make_token(name, scopes=("scores:submit",))


async def post_batch(
    api: Api, token: str, tickets: list[str], *, timestamps: dict[int, str] | None = None
) -> httpx.Response:
    """POST /api/scores/batch with these tickets, each with a timestamp of now unless
    ``timestamps`` (by position) says otherwise."""
    updates = [
        {"actionId": ticket, "timestamp": (timestamps or {}).get(i) or api.clock().isoformat()}
        for i, ticket in enumerate(tickets)
    ]
    return await api.client.post(BATCH, json={"updates": updates}, headers=bearer(token))


async def flags_of(api: Api, user: str, rule: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/admin/flags",
        params={"userId": user, "rule": rule, "status": "all"},
        headers=bearer(admin_token()),
    )
    assert response.status_code == 200, response.text
    flags: list[dict[str, Any]] = response.json()["flags"]
    return flags


async def history_of(api: Api, user: str) -> dict[str, Any]:
    response = await api.client.get(
        f"/api/admin/users/{quote(user, safe='')}/history", headers=bearer(admin_token())
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(engine: AsyncEngine, user: str) -> tuple[int | None, list[tuple[int, str | None]]]:
    """Straight from the database: the user's score and their audit rows (points, client IP)."""
    async with engine.connect() as conn:
        score = (
            await conn.execute(select(user_scores.c.score).where(user_scores.c.user_id == user))
        ).scalar_one_or_none()
        rows = await conn.execute(
            select(score_updates.c.score_change, score_updates.c.client_ip).where(
                score_updates.c.user_id == user
            )
        )
        audit = [(int(points), None if ip is None else str(ip)) for points, ip in rows]
    return (None if score is None else int(score)), audit


async def stored_at(
    database_url: str, user: str
) -> tuple[int | None, list[tuple[int, str | None]]]:
    engine = create_engine(database_url)
    try:
        return await stored(engine, user)
    finally:
        await engine.dispose()


def database_of(api: Api) -> str:
    """The app's database URL (its engine lives on the test client's own event loop)."""
    app: Litestar = api.client.app  # type: ignore[attr-defined]
    url: str = app.state.settings.resolved_database_url
    return url


def real_client(server: ServerProcess) -> httpx.AsyncClient:
    """An HTTP client for a real server process, with room for many parallel requests."""
    return httpx.AsyncClient(
        base_url=server.url,
        timeout=30,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )


def clean_log(server: ServerProcess) -> str:
    """The server's log, which must show no traceback and no unhandled error."""
    log = server.log_path.read_text()
    assert "Traceback" not in log, log
    assert "unhandled_error" not in log, log
    return log


# --- Prometheus scrapes ----------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """A scrape's samples by name and labels."""
    parsed: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[sample.name, frozenset(sample.labels.items())] = sample.value
    return parsed


def value(found: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the scrape has no such series."""
    return found.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def score_events(client: Any) -> list[ScoreEvent]:
    """The ``score_update`` events the app publishes from now on, as they are published."""
    seen: list[ScoreEvent] = []

    async def record(event: object) -> None:
        if isinstance(event, ScoreEvent):
            seen.append(event)

    client.app.state.broadcaster.subscribe(record)
    return seen
