"""Redis for tests: the server named by SCOREBOARD_TEST_REDIS_URL (default: the local one),
a key prefix of its own for every test, deleted afterwards, and a client that points at
nothing for the outage cases. Use it with ``pytest_plugins = ["tests.redis_support"]``.

With CI=true an unreachable server fails the run; elsewhere the Redis tests skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tests.processes import RedisServer
from tests.server import free_port

REDIS_URL = os.environ.get("SCOREBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        message = (
            f"Redis is not reachable at {REDIS_URL} ({exc}). Start it (redis-server), or "
            "point SCOREBOARD_TEST_REDIS_URL at a Redis >= 6.2 the tests may write to."
        )
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted when the test ends."""
    prefix = f"sbtest:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def dead_redis_client() -> AsyncIterator[Redis]:
    """A client for a Redis that is down; one retry, so outage tests stay quick."""
    client = Redis(
        host="127.0.0.1",
        port=free_port(),  # nothing listens there
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
    )
    yield client
    await client.aclose()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = RedisServer().start()
    yield server
    server.stop()
