from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from scoreboard.config import Settings
from scoreboard.leaderboard.cached import CachedRanking
from tests.helpers import Api, make_settings, settings_env
from tests.postgres import temporary_database, truncate
from tests.server import ServerProcess, StartServer

pytest_plugins = ["tests.redis_support"]


@dataclass(frozen=True)
class Backend:
    """Where a test's service keeps its data: a database, and Redis in the production shape."""

    name: str
    database_url: str
    redis_url: str | None = None
    redis_prefix: str | None = None

    def settings(self, data_dir: Path, **overrides: object) -> Settings:
        redis = {"redis_url": self.redis_url, "redis_prefix": self.redis_prefix}
        return make_settings(
            self.database_url, data_dir, **(redis if self.redis_url else {}), **overrides
        )

    def env(self, data_dir: Path, **overrides: str) -> dict[str, str]:
        env = settings_env(self.database_url, data_dir, **overrides)
        if self.redis_url and self.redis_prefix:
            env |= {
                "SCOREBOARD_REDIS_URL": self.redis_url,
                "SCOREBOARD_REDIS_PREFIX": self.redis_prefix,
            }
        return env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``one_backend`` runs on SQLite only: what it checks is decided before
    any storage is touched (request validation, body size and content type, routing, scope
    guards, CORS and OpenAPI settings), so PostgreSQL and Redis would only repeat it. (The
    rate limiter every request passes first counts in Redis in the production shape; the other
    tests cover it there.) Not for refusals that count or flag what they refuse (a bad token,
    a forged or late ticket): those write. The PostgreSQL items are deselected, not skipped."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if item.get_closest_marker("one_backend") is None:
            kept.append(item)
            continue
        params = getattr(item, "callspec", None)
        if params is None or "backend" not in params.params:
            raise pytest.UsageError(f"{item.nodeid} is marked one_backend but has no backend")
        (kept if params.params["backend"] == "sqlite" else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every API test runs on the embedded SQLite file, on PostgreSQL, and on PostgreSQL
    with the Redis ranking, fan-out and limits (the production shape)."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}")
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(truncate(url))
    if request.param == "postgres":
        return Backend("postgres", url)
    redis_url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return Backend("postgres+redis", url, redis_url, prefix)


@pytest.fixture
def database_url(backend: Backend) -> str:
    return backend.database_url


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return backend.settings(tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(settings)
    async with AsyncTestClient(app=app) as test_client:
        yield test_client
        served_by_redis(app)


def served_by_redis(app: Litestar | Any) -> None:
    """In the production shape every read and write must have gone through Redis: a Redis
    layer that fails would otherwise go unnoticed, its requests served from PostgreSQL by
    the fallback (which tests/production/test_faults.py and test_cached_ranking.py test on
    purpose)."""
    if not isinstance(app, Litestar):
        app = app.app  # under a test's own ASGI wrapper
    ranking = app.state.get("ranking")
    if isinstance(ranking, CachedRanking):
        assert ranking.failures == 0, "Redis failed during the test: the database answered"
        assert not ranking.stale, "the ranking fell back to the database during the test"


@pytest.fixture
def api(client: AsyncTestClient) -> Api:  # type: ignore[type-arg]
    return Api(client)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The embedded database of this test's servers (and of nothing else)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"


@pytest.fixture
def start_server(tmp_path: Path, sqlite_url: str) -> Iterator[StartServer]:
    """Start real `scoreboard serve` processes with extra settings (``SCOREBOARD_...=``), on
    the embedded SQLite file unless a database URL is given."""
    started: list[ServerProcess] = []

    def start(database_url: str | None = None, **env: str) -> ServerProcess:
        server = ServerProcess(
            settings_env(database_url or sqlite_url, tmp_path, **env),
            tmp_path / f"server-{len(started)}.log",
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
