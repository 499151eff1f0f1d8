"""On a real Redis Cluster (3 masters, 3 replicas) the service spreads its keys: every key of
one board period shares one slot (each ranking script touches one slot), different boards
land on different masters, and per-user keys (WebSocket tickets, rate-limit windows) hash by
user. Checked with CLUSTER KEYSLOT and the cluster's slot map."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from tests.helpers import Api, MovableClock, make_settings, make_token
from tests.redis_support import sync_client
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
