"""On a real Redis Cluster (3 masters, 3 replicas) the service spreads its keys: every key of
one board period shares one slot (each ranking script touches one slot), different boards
land on different masters, and per-user keys (WebSocket tickets, rate-limit windows) hash by
user. Checked with CLUSTER KEYSLOT and the cluster's slot map."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient
from redis.asyncio.cluster import ClusterNode

from scoreboard.app import create_app
from scoreboard.redis_urls import REDIS_FAILED, ClusterClient
from tests.helpers import Api, MovableClock, make_settings, make_token
from tests.redis_support import async_client, sync_client
from tests.redis_topology import (  # noqa: F401 - the fixture
    ClusterProcesses,
    redis_cluster_fixture,
)

pytestmark = pytest.mark.slow
THREE_BOARDS = Path(__file__).parent.parent / "three_boards.toml"
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)  # the periods' keys (and so their slots) are fixed


def _slot(client: redis.RedisCluster, key: str) -> int:
    return int(client.cluster_keyslot(key))


async def test_each_board_keeps_to_one_slot_and_boards_spread_over_masters(
    tmp_path: Path, postgres_url: str, redis_cluster: ClusterProcesses
) -> None:
    prefix = "sbslots:"
    settings = make_settings(
        postgres_url,
        tmp_path,
        redis_url=redis_cluster.url,
        redis_prefix=prefix,
        actions_file=THREE_BOARDS,
    )
    clock = MovableClock(NOW)
    app = create_app(settings, clock=clock)
    async with AsyncTestClient(app=app) as client:
        api = Api(client, clock=clock)
        for user in ("ann", "ben", "cat"):
            await api.score(user)
        ticket = await client.post(
            "/api/ws-ticket", headers={"Authorization": f"Bearer {make_token('ann')}"}
        )
        assert ticket.status_code in (200, 201), ticket.text

    cluster = sync_client(redis_cluster.url)
    assert isinstance(cluster, redis.RedisCluster)
    try:
        keys = [key.decode() for key in cluster.scan_iter(match=f"{prefix}*", count=1000)]
        ranking = [key for key in keys if key.startswith(f"{prefix}board:")]
        by_period: dict[str, set[int]] = {}
        for key in ranking:
            period = key[key.index("{") + 1 : key.index("}")]
            by_period.setdefault(period, set()).add(_slot(cluster, key))
        # the current periods, and the closed ones still readable
        assert {"global/all", "weekly/2026-W49", "daily/2026-12-03"} <= set(by_period)
        assert all(len(slots) == 1 for slots in by_period.values()), by_period  # one slot each
        masters = {
            redis_cluster.master_port_for_slot(next(iter(slots))) for slots in by_period.values()
        }
        assert len(masters) >= 2, f"all boards on one master: {by_period}"

        # The live channels: one per board, each in a slot of its own (which master holds
        # it depends on the board's name).
        channels = [f"{prefix}events:{{{board}}}" for board in ("global", "weekly", "daily")]
        assert len({_slot(cluster, channel) for channel in channels}) == 3

        # Per-user keys hash by user: a user's tickets and limits are not on a board's slot.
        tickets = [key for key in keys if "ws-tickets-of:" in key]
        assert tickets == [f"{prefix}ws-tickets-of:{{ann}}"]
        limits = [key for key in keys if key.startswith(f"{prefix}limits")]
        assert limits, "no rate-limit window was written"
        assert len({_slot(cluster, key) for key in limits}) >= 2  # by address, by user
    finally:
        for key in keys:
            cluster.delete(key)
        cluster.close()


async def test_commands_survive_the_client_dropping_idle_connections_after_an_error(
    redis_cluster: ClusterProcesses,
) -> None:
    """After any timeout or connection error redis-py's cluster client drops its idle
    connections to that node; redis-py 8.1 closes them while they are still free to take, and
    its topology refreshes close connections in use too. A command caught by either failed with
    ``AttributeError: 'NoneType' object has no attribute 'writelines'``, so a committed update
    answered 500. Guards against ``ClusterClient`` not retrying it: here the drops run without
    pause under 6,000 commands, and every command must succeed."""
    client = async_client(redis_cluster.url)
    assert isinstance(client, ClusterClient)
    stop = asyncio.Event()

    async def drop_idle_connections() -> None:
        while not stop.is_set():
            for node in client.get_nodes():
                await node.disconnect_free_connections()
            await asyncio.sleep(0)

    dropping = asyncio.create_task(drop_idle_connections())
    try:
        for round_ in range(30):
            results = await asyncio.gather(
                *(client.set(f"sbrace:{{{i}}}", round_) for i in range(200)),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, f"{len(failures)} commands failed, first: {failures[0]!r}"
        assert await client.get("sbrace:{7}") == b"29"
    finally:
        stop.set()
        await dropping
        await client.delete(*(f"sbrace:{{{i}}}" for i in range(200)))
        await client.aclose()


async def test_a_command_whose_connection_was_closed_under_it_is_sent_again(
    redis_cluster: ClusterProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When redis-py's cluster client refreshes its view of the cluster it closes connections
    other commands are using; such a command fails with an AttributeError (seen in CI: a
    ranking update under load). Guards against ``ClusterClient`` letting it through instead of
    retrying it as the connection error it is (a pipeline: raising it as one), and against it
    hiding any other AttributeError."""
    client = async_client(redis_cluster.url)
    assert isinstance(client, ClusterClient)
    try:
        await client.set("sbclosed:{1}", "before")
        node = client.get_node_from_key("sbclosed:{1}")
        real = ClusterNode.execute_command
        failing = 1

        async def closed_under_it(self: ClusterNode, *args: Any, **kwargs: Any) -> Any:
            nonlocal failing
            if self is node and failing:
                failing -= 1
                closed_writer: Any = None
                closed_writer.writelines([])  # what a closed connection's send raises
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(ClusterNode, "execute_command", closed_under_it)
        assert await client.set("sbclosed:{1}", "after")
        assert failing == 0
        assert await client.get("sbclosed:{1}") == b"after"

        failing = 100  # every try fails: a Redis failure the caller handles
        with pytest.raises(REDIS_FAILED):
            await client.get("sbclosed:{1}")
        assert 0 < failing < 100

        async def a_bug(self: ClusterNode, *args: Any, **kwargs: Any) -> Any:
            raise AttributeError("a bug, not a closed connection")

        monkeypatch.setattr(ClusterNode, "execute_command", a_bug)
        with pytest.raises(AttributeError, match="a bug"):  # not retried, not hidden
            await client.get("sbclosed:{1}")
        monkeypatch.undo()

        real_pipeline = ClusterNode.execute_pipeline

        async def pipeline_closed(self: ClusterNode, *args: Any, **kwargs: Any) -> Any:
            if self is node:
                closed_reader: Any = None
                closed_reader.read()
            return await real_pipeline(self, *args, **kwargs)

        monkeypatch.setattr(ClusterNode, "execute_pipeline", pipeline_closed)
        pipe = client.pipeline(transaction=False)
        pipe.get("sbclosed:{1}")
        with pytest.raises(REDIS_FAILED):  # the callers' Redis-failure handling takes over
            await pipe.execute()
    finally:
        monkeypatch.undo()
        await client.delete("sbclosed:{1}")
        await client.aclose()
