"""Fan-out and WebSocket tickets over the real Redis, with two "processes" (two broadcasters
or stores with their own connection pools) sharing one key prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from scoreboard.auth.principal import Principal
from scoreboard.errors import ServiceUnavailable
from scoreboard.live import redis_broadcaster, redis_tickets
from scoreboard.live.broadcaster import Event
from scoreboard.live.redis_broadcaster import RedisBroadcaster
from scoreboard.live.redis_tickets import RedisWsTicketStore
from scoreboard.live.tickets import TooManyTickets
from scoreboard.records import BoardsChanged, ScoreEvent
from scoreboard.redis_urls import RedisClient
from tests.redis_support import async_client

if TYPE_CHECKING:
    from tests.processes import RedisServer

pytest_plugins = ["tests.redis_support"]
WAIT = 5.0  # generous: only a failure waits this long


class Inbox:
    """A handler that remembers what it heard and lets a test wait for it."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()

    async def wait_for(self, count: int) -> list[Event]:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.events) >= count), WAIT)
        return self.events


async def eventually(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never came true")


def BOARDS() -> list[str]:  # noqa: N802 - stands for the board registry's list
    return ["global", "daily", "weekly"]


@pytest.fixture
async def second_client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = async_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def two_instances(
    redis_client: Redis, second_client: Redis, redis_prefix: str
) -> AsyncIterator[list[tuple[RedisBroadcaster, Inbox]]]:
    instances = []
    for client in (redis_client, second_client):
        broadcaster, inbox = RedisBroadcaster(client, redis_prefix, BOARDS), Inbox()
        broadcaster.subscribe(inbox)
        await broadcaster.start()
        assert broadcaster.subscribed
        instances.append((broadcaster, inbox))
    yield instances
    for broadcaster, _ in instances:
        await broadcaster.stop()


async def test_an_event_published_on_one_instance_reaches_every_instance(
    two_instances: list[tuple[RedisBroadcaster, Inbox]],
) -> None:
    (first, first_inbox), (_, second_inbox) = two_instances
    event = ScoreEvent("global", "all", "alice", 42, 1)
    await first.publish(event)
    assert await second_inbox.wait_for(1) == [event]
    assert await first_inbox.wait_for(1) == [event]  # once: through Redis, not also locally
    await asyncio.sleep(0.1)
    assert len(first_inbox.events) == len(second_inbox.events) == 1


async def test_each_board_has_its_own_channel_and_board_changes_reach_everyone(
    two_instances: list[tuple[RedisBroadcaster, Inbox]], redis_client: Redis, redis_prefix: str
) -> None:
    (first, first_inbox), (_, second_inbox) = two_instances
    daily = ScoreEvent("daily", "2026-12-02", "bob", 5, 1)
    weekly = ScoreEvent("weekly", "2026-W49", "bob", 5, 1)
    changed = BoardsChanged(7)
    # Listen the way an outsider would, on the daily board's channel only.
    channel = f"{redis_prefix}events:{{daily}}"
    async with redis_client.pubsub() as spy:
        if isinstance(spy, ClusterPubSub):  # a cluster shards the board channels
            await spy.ssubscribe(channel)
            receive = spy.get_sharded_message
        else:
            await spy.subscribe(channel)
            receive = spy.get_message
        await first.publish(daily, weekly, changed)
        # Order holds within a channel; on a cluster different channels live on different
        # nodes, so the three may arrive in any order.
        assert sorted(map(repr, await second_inbox.wait_for(3))) == sorted(
            map(repr, [daily, weekly, changed])
        )
        heard: list[bytes] = []
        async with asyncio.timeout(WAIT):
            while len(heard) < 1:
                message = await receive(ignore_subscribe_messages=True, timeout=1)
                if message:
                    heard.append(message["data"])
        await asyncio.sleep(0.1)
        assert await receive(ignore_subscribe_messages=True, timeout=0.2) is None
    assert b'"board":"daily"' in heard[0]
    assert len(first_inbox.events) == 3


async def test_a_stopped_instance_hears_nothing_until_it_starts_again(
    two_instances: list[tuple[RedisBroadcaster, Inbox]],
) -> None:
    (first, first_inbox), (second, second_inbox) = two_instances
    await second.stop()
    await first.publish(ScoreEvent("global", "all", "alice", 1, 1))
    await first_inbox.wait_for(1)
    await asyncio.sleep(0.1)
    assert second_inbox.events == []
    await second.start()
    assert second.subscribed
    await first.publish(ScoreEvent("global", "all", "alice", 2, 1))
    assert await second_inbox.wait_for(1) == [ScoreEvent("global", "all", "alice", 2, 1)]


async def test_a_board_created_later_reaches_every_instance(
    redis_client: Redis, second_client: Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster each board has a shard channel of its own: a board that appears after
    start-up needs a subscription on every instance (made when its BoardsChanged arrives),
    or its events would reach only the instance that accepted them. (One server: the
    pattern covers it from the start.)"""
    monkeypatch.setattr(redis_broadcaster, "BOARDS_CHECK", 60.0)  # the event, not the timer
    known = ["global"]
    instances: list[tuple[RedisBroadcaster, Inbox]] = []
    for client in (redis_client, second_client):
        broadcaster, inbox = RedisBroadcaster(client, redis_prefix, lambda: list(known)), Inbox()
        broadcaster.subscribe(inbox)
        await broadcaster.start()
        instances.append((broadcaster, inbox))
    (first, _), (_, second_inbox) = instances
    try:
        known.append("fresh")
        await first.publish(BoardsChanged(8))
        fresh = ScoreEvent("fresh", "all", "alice", 3, 1)
        async with asyncio.timeout(WAIT):  # resubscribing takes a moment: a gap, not a loss
            while fresh not in second_inbox.events:
                await first.publish(fresh)
                await asyncio.sleep(0.1)
    finally:
        for broadcaster, _ in instances:
            await broadcaster.stop()


class LosesTheSecond:
    """A pipeline through which the second publish never reaches Redis and reports an error,
    as when one master of a cluster fails while the others take their events."""

    def __init__(self, pipe: Any) -> None:
        self._pipe, self._calls = pipe, 0

    async def __aenter__(self) -> LosesTheSecond:
        await self._pipe.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pipe.__aexit__(*exc)

    def _forward(self, name: str, *args: Any) -> None:
        self._calls += 1
        if self._calls != 2:
            getattr(self._pipe, name)(*args)

    def publish(self, *args: Any) -> None:
        self._forward("publish", *args)

    def spublish(self, *args: Any) -> None:
        self._forward("spublish", *args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        replies: list[Any] = await self._pipe.execute(raise_on_error=raise_on_error)
        replies.insert(1, RedisConnectionError("lost on the way"))
        return replies


async def test_an_event_redis_did_not_take_is_delivered_here_once(
    redis_client: Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish that Redis took in part: the events it took come back through the
    subscription, the lost one is delivered here directly; none twice, none missing."""
    broadcaster, inbox = RedisBroadcaster(redis_client, redis_prefix, BOARDS), Inbox()
    broadcaster.subscribe(inbox)
    await broadcaster.start()
    real = redis_client.pipeline
    monkeypatch.setattr(
        redis_client, "pipeline", lambda transaction=False: LosesTheSecond(real(transaction))
    )
    try:
        events = [ScoreEvent("global", "all", "alice", n, 1) for n in (1, 2, 3)]
        await broadcaster.publish(*events)
        await inbox.wait_for(3)
        await asyncio.sleep(0.2)
        assert sorted(map(repr, inbox.events)) == sorted(map(repr, events))
    finally:
        await broadcaster.stop()


async def test_a_failing_handler_does_not_starve_the_others(
    redis_client: Redis, redis_prefix: str
) -> None:
    broadcaster, inbox = RedisBroadcaster(redis_client, redis_prefix, BOARDS), Inbox()

    async def broken(event: Event) -> None:
        raise RuntimeError("boom")

    broadcaster.subscribe(broken)
    broadcaster.subscribe(inbox)
    await broadcaster.start()
    await broadcaster.publish(ScoreEvent("global", "all", "alice", 1, 1))
    await broadcaster.publish(ScoreEvent("global", "all", "alice", 2, 1))
    assert [getattr(e, "new_score", None) for e in await inbox.wait_for(2)] == [1, 2]
    await broadcaster.stop()


async def test_with_redis_unreachable_events_are_delivered_locally(
    dead_redis_client: Redis,
) -> None:
    broadcaster, inbox = RedisBroadcaster(dead_redis_client, "sbtest:dead:"), Inbox()
    broadcaster.subscribe(inbox)
    await broadcaster.publish(
        ScoreEvent("global", "all", "alice", 1, 1)
    )  # not started: tries Redis, then here
    await broadcaster.start(wait=0.5)
    assert not broadcaster.subscribed
    await broadcaster.publish(
        ScoreEvent("global", "all", "alice", 2, 1)
    )  # known outage: straight here
    assert [getattr(e, "new_score", None) for e in inbox.events] == [1, 2]
    await broadcaster.stop()


async def test_fan_out_resumes_by_itself_when_redis_comes_back(
    redis_server: RedisServer,
) -> None:
    listener_client, publisher_client = (
        Redis.from_url(redis_server.url),
        Redis.from_url(redis_server.url),
    )
    listener, inbox = RedisBroadcaster(listener_client, "sbtest:"), Inbox()
    listener.subscribe(inbox)
    publisher = RedisBroadcaster(publisher_client, "sbtest:")
    try:
        await listener.start()
        redis_server.stop()
        await eventually(lambda: not listener.subscribed)
        await listener.publish(
            ScoreEvent("global", "all", "local", 1, 1)
        )  # the outage: delivered here
        assert [getattr(e, "user_id", None) for e in await inbox.wait_for(1)] == ["local"]
        redis_server.start()
        await eventually(lambda: listener.subscribed)
        await publisher.publish(ScoreEvent("global", "all", "remote", 2, 1))
        got = await inbox.wait_for(2)
        assert [getattr(e, "user_id", None) for e in got] == ["local", "remote"]
    finally:
        await listener.stop()
        await listener_client.aclose()
        await publisher_client.aclose()


ALICE = Principal("alice", "Alice", frozenset({"leaderboard:read"}), expires_at=2e9)


@pytest.fixture
def two_stores(
    redis_client: Redis, second_client: Redis, redis_prefix: str
) -> tuple[RedisWsTicketStore, RedisWsTicketStore]:
    return (
        RedisWsTicketStore(redis_client, redis_prefix, max_per_user=3),
        RedisWsTicketStore(second_client, redis_prefix, max_per_user=3),
    )


async def test_a_ticket_is_redeemed_once_on_any_instance(
    two_stores: tuple[RedisWsTicketStore, RedisWsTicketStore],
) -> None:
    first, second = two_stores
    ticket, _ = await first.issue(ALICE)
    redeemed = await asyncio.gather(*(store.redeem(ticket) for store in two_stores * 5))
    assert [p for p in redeemed if p is not None] == [ALICE]
    assert await second.redeem("no-such-ticket") is None
    assert await second.redeem("x" * 10_000) is None


async def test_a_ticket_expires(
    two_stores: tuple[RedisWsTicketStore, RedisWsTicketStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_stores
    monkeypatch.setattr(redis_tickets, "TICKET_TTL", 0.2)
    ticket, _ = await first.issue(ALICE)
    await asyncio.sleep(0.3)
    assert await second.redeem(ticket) is None


async def test_unused_tickets_are_capped_per_user(
    two_stores: tuple[RedisWsTicketStore, RedisWsTicketStore],
) -> None:
    first, second = two_stores
    tickets = [(await store.issue(ALICE))[0] for store in (first, second, first)]
    with pytest.raises(TooManyTickets, match="too many unused"):
        await second.issue(ALICE)
    bob = Principal("bob", "Bob", frozenset(), expires_at=2e9)
    await second.issue(bob)  # other users are not affected
    assert await first.redeem(tickets[0]) == ALICE
    await second.issue(ALICE)  # a redeemed ticket frees its place


async def test_expired_tickets_no_longer_count_against_the_cap(
    two_stores: tuple[RedisWsTicketStore, RedisWsTicketStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_stores
    monkeypatch.setattr(redis_tickets, "TICKET_TTL", 0.3)
    for _ in range(3):
        await first.issue(ALICE)
    monkeypatch.setattr(redis_tickets, "TICKET_TTL", 30.0)
    with pytest.raises(TooManyTickets, match="too many unused"):
        await second.issue(ALICE)  # the three are still valid; this also keeps the set alive
    await asyncio.sleep(0.4)
    await second.issue(ALICE)  # they have expired, and are trimmed


async def test_tickets_answer_503_when_redis_is_down(dead_redis_client: Redis) -> None:
    store = RedisWsTicketStore(dead_redis_client, "sbtest:dead:")
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await store.issue(ALICE)
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await store.redeem("some-ticket")
