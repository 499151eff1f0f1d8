"""The production shape as real processes: PostgreSQL (a fresh database per test), a
redis-server of the test's own, `scoreboard serve` instances and nginx, plus the checks every
fault test ends with: each acknowledged update is in PostgreSQL, in the leaderboard and in
the Redis ranking, and nothing else scored."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection

from scoreboard.redis_urls import RedisClient
from tests.helpers import Api, settings_env
from tests.live.wsclient import next_event
from tests.postgres import temporary_database
from tests.processes import Nginx, RedisServer, TcpProxy
from tests.redis_support import async_client
from tests.server import ServerProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ABUSE_OFF = json.dumps(
    {"points_per_minute": {"policy": "off"}, "actions_per_minute": {"policy": "off"}}
)
POINTS = 10  # the "instant" action of tests/actions.toml


class Stoppable(Protocol):
    def stop(self) -> None: ...


class RedisDeployment(Protocol):
    """A redis-server of the test's own, a cluster or a Sentinel set."""

    @property
    def url(self) -> str: ...


def _missing(binary: str, package: str) -> None:
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        message = f"{binary} is not installed (apt-get install {package})"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def require_nginx() -> None:
    _missing("nginx", "nginx")


def plain_url(url: str) -> str:
    """The SQLAlchemy URL as asyncpg wants it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def via_port(url: str, port: int) -> str:
    """The same database reached through another loopback port (a proxy)."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def database_port(url: str) -> int:
    return make_url(url).port or 5432


@dataclass
class Shape:
    """One test's deployment: its database, its Redis and the processes it started."""

    tmp_path: Path
    database_url: str
    redis: RedisDeployment
    prefix: str = field(default_factory=lambda: f"sbprod:{uuid.uuid4().hex[:10]}:")
    started: list[Stoppable] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def env(self, database_url: str | None = None, **overrides: str) -> dict[str, str]:
        env = settings_env(database_url or self.database_url, self.tmp_path)
        env |= {
            "SCOREBOARD_REDIS_URL": self.redis.url,
            "SCOREBOARD_REDIS_PREFIX": self.prefix,
            "SCOREBOARD_AUTO_MIGRATE": "true",
            "SCOREBOARD_TRUSTED_PROXIES": '["127.0.0.1"]',
            "SCOREBOARD_ABUSE_RULES": ABUSE_OFF,
        }
        return env | overrides

    def app(self, name: str, database_url: str | None = None, **overrides: str) -> ServerProcess:
        log = self.tmp_path / f"{name}.log"
        server = ServerProcess(self.env(database_url, **overrides), log)
        self.started.append(server)
        self.logs.append(log)
        return server.start()

    def nginx(self, first: ServerProcess, second: ServerProcess) -> Nginx:
        require_nginx()
        directory = self.tmp_path / "nginx"
        directory.mkdir(exist_ok=True)
        upstreams = (f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}")
        proxy = Nginx(directory, upstreams)
        self.started.append(proxy)
        self.logs.append(directory / "error.log")
        return proxy.start()

    def proxy(self) -> TcpProxy:
        proxy = TcpProxy(database_port(self.database_url))
        self.started.append(proxy)
        return proxy.start()

    def redis_client(self) -> RedisClient:
        return async_client(self.redis.url)

    def redis_key(self, name: str, board: str = "global", period: str = "all") -> str:
        """A key of one board period's ranking cache (they share the hash tag)."""
        return f"{self.prefix}board:{{{board}/{period}}}:{name}"

    async def redis_board(self, board: str = "global", period: str = "all") -> dict[str, int]:
        """The spec's `ZADD leaderboard {score} {user_id}` set of a board period, as it is in
        Redis now."""
        client = self.redis_client()
        try:
            key = self.redis_key("leaderboard", board, period)
            pairs: Any = await client.zrange(key, 0, -1, withscores=True)
        finally:
            await client.aclose()
        return {member.decode(): int(score) for member, score in pairs}

    async def redis_users(self) -> set[str]:
        client = self.redis_client()
        try:
            keys: Any = await client.hkeys(self.redis_key("users"))
        finally:
            await client.aclose()
        return {key.decode() for key in keys}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone."""
    with temporary_database() as url:
        yield url


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, on a spare port, to stop and start at will."""
    _missing("redis-server", "redis-server")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def deployed(tmp_path: Path, database_url: str, redis: RedisDeployment) -> Iterator[Shape]:
    """A deployment whose processes stop when the block ends, their logs printed (pytest
    shows them when the test failed)."""
    deployment = Shape(tmp_path, database_url, redis)
    try:
        yield deployment
    finally:
        for process in reversed(deployment.started):
            process.stop()
        for log in deployment.logs:
            if log.exists():
                print(f"----- {log.name} (last 4000 characters) -----")
                print(log.read_text(errors="replace")[-4000:])


@pytest.fixture
def shape(tmp_path: Path, pg_url: str, redis_server: RedisServer) -> Iterator[Shape]:
    with deployed(tmp_path, pg_url, redis_server) as deployment:
        yield deployment


# --- What PostgreSQL holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    scores: dict[str, int]  # user_scores of the global board
    audit: dict[str, int]  # sum of score_updates.score_change per user
    action_ids: set[str]  # every score_updates.action_id


async def stored(database_url: str) -> Stored:
    conn = await asyncpg.connect(plain_url(database_url), timeout=5)
    try:
        scores = await conn.fetch(
            "SELECT user_id, score FROM user_scores "
            "WHERE board_id = 'global' AND period_key = 'all'"
        )
        audit = await conn.fetch(
            "SELECT user_id, SUM(score_change) AS total FROM score_updates GROUP BY user_id"
        )
        actions = await conn.fetch("SELECT action_id FROM score_updates")
    finally:
        await conn.close()
    return Stored(
        {row["user_id"]: int(row["score"]) for row in scores},
        {row["user_id"]: int(row["total"]) for row in audit},
        {row["action_id"] for row in actions},
    )


# --- The ledger of acknowledged updates ------------------------------------------------------


def audit_id(ticket: str) -> str:
    """The id the audit row carries for a ticket: its nonce (``jti``)."""
    claims = jwt.decode(ticket, options={"verify_signature": False})
    nonce: str = claims["jti"]
    return nonce


@dataclass
class Ledger:
    """What the clients were told: every update answered 200, by audit id (ticket nonce)."""

    acknowledged: dict[str, tuple[str, int]] = field(default_factory=dict)

    def record(self, user_id: str, ticket: str, points: int = POINTS) -> None:
        self.acknowledged[audit_id(ticket)] = (user_id, points)

    def expected(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for user_id, points in self.acknowledged.values():
            totals[user_id] = totals.get(user_id, 0) + points
        return totals


async def score(api: Api, ledger: Ledger, user_id: str) -> dict[str, Any]:
    """One acknowledged update (asserts the 200) recorded in the ledger."""
    action_id = await api.issue(user_id)
    response = await api.complete(user_id, action_id)
    assert response.status_code == 200, response.text
    ledger.record(user_id, action_id)
    body: dict[str, Any] = response.json()
    return body


async def leaderboard_scores(base_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        entries = await Api(client).leaderboard(100)
    return {entry["userId"]: entry["score"] for entry in entries}


async def eventually(
    probe: Callable[[], Awaitable[Any]], want: Any, seconds: float, what: str
) -> None:
    """Poll ``probe`` until it returns ``want``; fail with the last value after ``seconds``."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while True:
        try:
            last = await probe()
        except Exception as exc:  # Redis or the app may still be coming back
            last = exc
        if last == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not {want!r} after {seconds} s; last: {last!r}")
        await asyncio.sleep(0.2)


async def assert_ranked_and_durable(
    shape: Shape, ledger: Ledger, base_urls: list[str], *, redis_within: float = 20
) -> None:
    """The invariant of every fault test: each 200 is in PostgreSQL (audit row and total)
    and in GET /api/leaderboard of every given instance, Redis agrees, nothing else scored."""
    expected = ledger.expected()
    assert len(expected) <= 100, "the leaderboard check reads the top 100"
    database = await stored(shape.database_url)
    assert database.action_ids == set(ledger.acknowledged), "audit rows != acknowledged updates"
    assert database.audit == expected
    assert database.scores == expected
    for base_url in base_urls:
        assert await leaderboard_scores(base_url) == expected, base_url
    await eventually(shape.redis_board, expected, redis_within, "Redis leaderboard ZSET")


async def board_shows(ws: ClientConnection, user_id: str, points: int, wait: float) -> None:
    """Wait for a leaderboard_update in which ``user_id`` has ``points``."""
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no leaderboard_update with {user_id}={points}")
        event = await next_event(ws, "leaderboard_update", remaining)
        if any(
            entry["userId"] == user_id and entry["score"] == points
            for entry in event["leaderboard"]
        ):
            return
