"""What many tests share: settings, tokens, forged tickets, and a small API client."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.actions.catalog import ActionType, load_catalog
from scoreboard.actions.tickets import TicketSigner
from scoreboard.auth.principal import DEFAULT_USER_SCOPES
from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.service import BoardRegistry
from scoreboard.clock import Clock, system_clock
from scoreboard.config import Settings
from scoreboard.keys import load_keys

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


def now_iso(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


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
