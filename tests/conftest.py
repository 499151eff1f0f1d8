from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from scoreboard.config import Settings
from tests.helpers import Api, make_settings
from tests.postgres import temporary_database, truncate


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every API test runs once on the embedded SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(truncate(url))
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def api(client: AsyncTestClient) -> Api:  # type: ignore[type-arg]
    return Api(client)
