"""The service's Redis pool on a real Redis: it never opens more than its bound (a caller
waits, then fails fast), and connections a burst opened are closed once idle."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from scoreboard.config import Settings
from scoreboard.redis_urls import RedisClient
from scoreboard.shapes import TrimmedPool, redis_client, shared_pool

pytest_plugins = ["tests.redis_support"]


async def _hold(client: RedisClient, seconds: float) -> None:
    await client.blpop(["sbtest:pool:nothing"], seconds)  # holds a connection meanwhile


async def test_a_burst_opens_at_most_the_bound_and_its_connections_close_when_idle(
    redis_url: str,
) -> None:
    client = redis_client(Settings(redis_url=redis_url, redis_max_connections=8))
    pool = shared_pool(client)
    assert isinstance(pool, TrimmedPool)
    try:
        await asyncio.gather(*(_hold(client, 0.3) for _ in range(8)))
        assert pool.open_connections == 8
        assert await pool.trim() == 0  # just used: kept
        pool._idle = 0.0  # as if a minute passed
        assert await pool.trim() == 8 - 4
        assert pool.open_connections == 4
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_caller_beyond_the_bound_waits_then_fails_fast(redis_url: str) -> None:
    client = redis_client(Settings(redis_url=redis_url, redis_max_connections=4))
    try:
        pool = shared_pool(client)
        assert isinstance(pool, TrimmedPool)
        held = [await pool.get_connection() for _ in range(4)]  # type: ignore[no-untyped-call]
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()  # waits POOL_WAIT seconds for one of the four, then gives up
        assert pool.open_connections == 4
        for connection in held:
            await pool.release(connection)
        assert await client.ping()
    finally:
        await client.aclose()
