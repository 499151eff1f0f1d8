"""The production shape on a real Redis Cluster (3 masters, 3 replicas) and a real Sentinel
set (a master, a replica, 3 sentinels), with two `scoreboard serve` instances on PostgreSQL.

A master is killed during a stream of updates sent to both instances. Afterwards every update
answered 200 is in PostgreSQL, in the leaderboard of both instances and in the Redis cache,
nothing else scored, and WebSocket clients on both instances receive updates again, without a
restart. The failover time (first update not acknowledged to the next acknowledged one) and
how long the cache and the fan-out took to come back are printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from scoreboard.config import Settings
from scoreboard.live.broadcaster import Event
from scoreboard.live.redis_broadcaster import RedisBroadcaster
from scoreboard.records import ScoreEvent
from scoreboard.shapes import redis_client
from tests.helpers import Api, make_token
from tests.live.wsclient import next_event, open_ws
from tests.production.conftest import (
    POINTS,
    Ledger,
    Shape,
    audit_id,
    board_shows,
    deployed,
    eventually,
    leaderboard_scores,
    stored,
)
from tests.redis_support import sync_client
from tests.redis_topology import (  # noqa: F401 - fixtures
    ClusterProcesses,
    SentinelProcesses,
    fresh_redis_cluster_fixture,
    redis_sentinel_fixture,
)

pytestmark = pytest.mark.slow
RECOVERY = 30.0  # seconds the service may take to heal itself after the failover
USERS = [f"failover-{n}" for n in range(5)]


@dataclass
class Stream:
    """Updates sent round-robin to the instances until told to stop, and what each got."""

    ledger: Ledger = field(default_factory=Ledger)
    refused: set[str] = field(default_factory=set)  # answered, not 200: must not score
    unanswered: set[str] = field(default_factory=set)  # no answer: may or may not score
    timeline: list[tuple[float, bool]] = field(default_factory=list)  # (when, acknowledged)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, base_urls: list[str]) -> None:
        clients = [httpx.AsyncClient(base_url=url, timeout=10) for url in base_urls]
        try:
            n = 0
            while not self.stop.is_set():
                api, user = Api(clients[n % len(clients)]), USERS[n % len(USERS)]
                n += 1
                await self._one(api, user)
                await asyncio.sleep(0.02)
        finally:
            for client in clients:
                await client.aclose()

    async def _one(self, api: Api, user: str) -> None:
        try:
            ticket = await api.issue(user)
        except (AssertionError, httpx.TransportError):  # no ticket: nothing to score
            self.timeline.append((time.monotonic(), False))
            return
        try:
            status: int | None = (await api.complete(user, ticket)).status_code
        except httpx.TransportError:
            status = None
        self.timeline.append((time.monotonic(), status == 200))
        if status == 200:
            self.ledger.record(user, ticket)
        elif status is None:
            self.unanswered.add(audit_id(ticket))
        else:
            self.refused.add(audit_id(ticket))

    def failover_seconds(self, since: float) -> float:
        """From the first update not acknowledged after ``since`` to the next acknowledged
        one; 0 when every update was acknowledged."""
        later = [(at, ok) for at, ok in self.timeline if at >= since]
        first_bad = next((at for at, ok in later if not ok), None)
        if first_bad is None:
            return 0.0
        back = next((at for at, ok in later if ok and at > first_bad), None)
        assert back is not None, "no update was acknowledged after the failover"
        return back - first_bad


async def _failover_under_load(
    shape: Shape, fail: Callable[[], tuple[str, float]], label: str
) -> None:
    """Stream updates to two instances, run ``fail`` (it kills masters and waits for their
    replicas to take over, returning what it did and how long that took), then check the
    invariant and that the fan-out came back."""
    first, second = shape.app("app-a"), shape.app("app-b")
    watchers = [
        await open_ws(server, make_token(f"watch-{server.port}")) for server in (first, second)
    ]
    try:
        for watcher in watchers:
            await next_event(watcher, "connection_success")
        stream = Stream()
        streaming = asyncio.create_task(stream.run([first.url, second.url]))
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        what, promotion = await asyncio.to_thread(fail)
        await asyncio.sleep(3.0)  # updates keep coming after the new master took over
        stream.stop.set()
        await streaming
        assert stream.ledger.acknowledged, "nothing was acknowledged"
        outage = stream.failover_seconds(killed_at)

        # Every 200 is in PostgreSQL; nothing refused scored; the totals add up.
        database = await stored(shape.database_url)
        acknowledged = set(stream.ledger.acknowledged)
        assert acknowledged <= database.action_ids, "an acknowledged update was lost"
        assert database.action_ids <= acknowledged | stream.unanswered, "something else scored"
        assert not database.action_ids & stream.refused
        assert database.scores == database.audit, "user_scores != the sum of the audit rows"
        for base_url in (first.url, second.url):
            assert await leaderboard_scores(base_url) == database.scores, base_url
        cache_from = time.monotonic()
        await eventually(shape.redis_board, database.scores, RECOVERY, "the Redis cache")
        cache_took = time.monotonic() - cache_from

        # The fan-out came back on both instances: an update accepted by one reaches the
        # other's clients through the new master.
        fanout_from = time.monotonic()
        expected = dict(database.scores)
        for server, watcher in ((first, watchers[1]), (second, watchers[0])):
            user = f"after-{server.port}"
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                await Api(client).score(user)
            expected[user] = POINTS
            await board_shows(watcher, user, POINTS, wait=RECOVERY)
        fanout_took = time.monotonic() - fanout_from
    finally:
        for watcher in watchers:
            await watcher.close()
    print(
        f"\n{label}: {what}; promotion {promotion:.1f} s; updates not acknowledged for "
        f"{outage:.2f} s ({len(stream.refused)} refused, {len(stream.unanswered)} unanswered, "
        f"{len(acknowledged)} acknowledged); cache equal to PostgreSQL {cache_took:.1f} s "
        f"after the stream; fan-out checked in {fanout_took:.1f} s"
    )


async def test_a_cluster_master_dies_during_a_stream_of_updates(
    tmp_path: Path, pg_url: str, fresh_redis_cluster: ClusterProcesses
) -> None:
    cluster = fresh_redis_cluster
    with deployed(tmp_path, pg_url, cluster) as shape:
        ranking = cluster.master_port_for_key(shape.redis_key("leaderboard"))
        fan_out = cluster.master_port_for_key(f"{shape.prefix}events:{{global}}")

        def fail() -> tuple[str, float]:
            took = 0.0
            for port in dict.fromkeys((ranking, fan_out)):  # the ranking's master, then the
                cluster.kill(port)  # fan-out channel's (often another one)
                took += cluster.wait_for_failover(port)
            return f"killed masters {sorted({ranking, fan_out})}", took

        await _failover_under_load(shape, fail, "cluster")


async def test_the_sentinel_master_dies_during_a_stream_of_updates(
    tmp_path: Path, pg_url: str, redis_sentinel: SentinelProcesses
) -> None:
    with deployed(tmp_path, pg_url, redis_sentinel) as shape:

        def fail() -> tuple[str, float]:
            port = redis_sentinel.kill_master()
            return f"killed master {port}", redis_sentinel.wait_for_failover(port)

        await _failover_under_load(shape, fail, "sentinel")


async def test_fan_out_comes_back_when_a_master_hangs(
    fresh_redis_cluster: ClusterProcesses,
) -> None:
    """A master that hangs (SIGSTOP: no reset ever reaches its subscribers, unlike a kill)
    must not silence its board's channel for good: once a replica takes over, the instances
    notice the slot's new owner and subscribe there."""
    cluster = fresh_redis_cluster
    clients = [redis_client(Settings(redis_url=cluster.url)) for _ in range(2)]
    sender = RedisBroadcaster(clients[0], "sbhung:", lambda: ["global"])
    listener = RedisBroadcaster(clients[1], "sbhung:", lambda: ["global"])
    heard: list[Event] = []

    async def hear(event: Event) -> None:
        heard.append(event)

    listener.subscribe(hear)
    await sender.start()
    await listener.start()
    port = cluster.master_port_for_key(listener.board_channel("global"))
    pid = int(sync_client(f"redis://127.0.0.1:{port}").info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        hung_at, n = time.monotonic(), 0
        while not heard and time.monotonic() - hung_at < RECOVERY:
            n += 1
            await sender.publish(ScoreEvent("global", "all", "alice", n, 1))
            await asyncio.sleep(0.2)
        assert heard, f"nothing heard {RECOVERY} s after the master hung"
        print(f"\nhung master: fan-out back after {time.monotonic() - hung_at:.1f} s")
    finally:
        os.kill(pid, signal.SIGCONT)
        for broadcaster in (sender, listener):
            await broadcaster.stop()
        for client in clients:
            await client.aclose()
