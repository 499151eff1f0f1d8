"""Redis for tests: the server named by SCOREBOARD_TEST_REDIS_URL (default: the local one;
a ``redis+cluster://`` or ``redis+sentinel://`` URL works too), a key prefix of its own for
every test, deleted afterwards, and a client that points at nothing for the outage cases.
Use it with ``pytest_plugins = ["tests.redis_support"]``.

With CI=true an unreachable server fails the run; elsewhere the Redis tests skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.cluster
import redis.sentinel
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from scoreboard.redis_urls import ClusterClient, RedisClient, parse_redis_url
from tests.processes import RedisServer
from tests.server import free_port

REDIS_URL = os.environ.get("SCOREBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOPOLOGY = os.environ.get("SCOREBOARD_TEST_REDIS_TOPOLOGY", "")


def sync_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A blocking client for any topology the service accepts."""
    target = parse_redis_url(url)
    timeouts: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if target.topology == "cluster":
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in target.nodes]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=nodes, **timeouts)
    if target.topology == "sentinel":
        assert target.master
        sentinel = redis.sentinel.Sentinel(list(target.nodes), sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
        master: redis.Redis = sentinel.master_for(target.master, **timeouts)  # type: ignore[no-untyped-call]
        return master
    return redis.Redis.from_url(url, **timeouts)


def async_client(url: str) -> RedisClient:
    """An asyncio client for any topology the service accepts."""
    target = parse_redis_url(url)
    if target.topology == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        # A timeout makes redis-py's cluster client drop the node's connections under the
        # feet of concurrent commands (AttributeError: no writer): tests that fire hundreds
        # of commands at once on a loaded machine need room.
        return ClusterClient(startup_nodes=nodes, socket_timeout=10)
    if target.topology == "sentinel":
        assert target.master
        sentinel = Sentinel(list(target.nodes))  # type: ignore[no-untyped-call]
        master: Redis = sentinel.master_for(target.master, socket_timeout=2)
        return master
    return Redis.from_url(url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """SCOREBOARD_TEST_REDIS_TOPOLOGY=cluster (or sentinel) starts a Redis Cluster of 3
    masters and 3 replicas (or a Sentinel set) for the run and points every Redis test at it:
    `make test` runs the Redis-backed suites that way once more."""
    if TOPOLOGY:
        from tests import redis_topology  # it imports this module

        topology: redis_topology.ClusterProcesses | redis_topology.SentinelProcesses
        if TOPOLOGY == "cluster":
            topology = redis_topology.ClusterProcesses()
        elif TOPOLOGY == "sentinel":
            topology = redis_topology.SentinelProcesses()
        else:
            raise pytest.UsageError(f"SCOREBOARD_TEST_REDIS_TOPOLOGY={TOPOLOGY}: cluster|sentinel")
        redis_topology.require_redis("redis-server", "redis-cli")
        try:
            yield topology.start().url
        finally:
            topology.stop()
        return
    client = sync_client(REDIS_URL)
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
    yield REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted when the test ends."""
    prefix = f"sbtest:{uuid.uuid4().hex}:"
    yield prefix
    client = sync_client(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for key in keys:  # one by one: on a cluster they live in many slots
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = async_client(redis_url)
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
