"""Score and board events over Redis pub/sub, so a change accepted on any instance reaches
the live clients of every instance.

Score events go to one channel per board (``<prefix>events:{<board>}``, the board as its hash
tag), board changes to ``<prefix>control``. On one server (or Sentinel's master) each process
holds one subscription: a pattern over the board channels plus the control channel, on one
connection. On a Redis Cluster classic pub/sub would copy every message to every node, so
events use sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis >= 7): a board's channel lives on the
master that owns its slot, and each process holds one connection per master it needs,
subscribed to the channels of every known board. A failover or a slot move (the node ends the
shard subscriptions), a dead connection or a new board makes it subscribe again from a fresh
slot map. Never one subscription per socket or board.

Redis going away never breaks score updates: events are then delivered to this instance's
handlers directly, and the subscription comes back by itself with capped backoff. Pub/sub is
at-most-once: an event published while a subscriber is (re)subscribing is lost to it, which
the hub absorbs because every later event refreshes the whole board.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from scoreboard.live.broadcaster import Event, Handler
from scoreboard.records import BoardsChanged, ScoreEvent
from scoreboard.redis_urls import REDIS_DOWN, RedisClient
from scoreboard.redis_wire import wire_of

log = structlog.get_logger("scoreboard.live")
FIRST_RETRY = 0.1
LAST_RETRY = 5.0

STOP_TIMEOUT = 3.0
BOARDS_CHECK = 2.0  # seconds between looks for new boards and moved slots (cluster)
_encode = msgspec.json.Encoder().encode
_decode_score = msgspec.json.Decoder(ScoreEvent).decode
_decode_boards = msgspec.json.Decoder(BoardsChanged).decode
GLOB_SPECIAL = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


class RedisBroadcaster:
    def __init__(
        self, redis: RedisClient, prefix: str, boards: Callable[[], Iterable[str]] = tuple
    ) -> None:
        """``boards``: the ids of the boards there are; on a cluster each gets a shard
        subscription (one server needs no list: a pattern covers them all)."""
        self._redis = redis
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._boards = boards
        self.board_channels = f"{prefix}events:"
        self.pattern = f"{prefix.translate(GLOB_SPECIAL)}events:*"
        self.control = f"{prefix}control"
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._boards_changed = asyncio.Event()
        self._channels: set[str] = set()  # the shard channels subscribed to, all confirmed
        self._outage = False

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def start(self, wait: float = 2.0) -> None:
        """Start listening; wait up to ``wait`` seconds for the subscription, so events
        published right after start-up are heard. Redis being down does not hold it up."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="redis-score-events")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._subscribed.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: closing a pub/sub connection mid-read can stall inside redis-py, and
            # shutdown must finish whatever the connection does.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await task
            if not task.done():
                log.warning("score_events_listener_not_stopped")

    def channel(self, event: Event) -> str:
        if isinstance(event, ScoreEvent):
            return self.board_channel(event.board)
        return self.control

    def board_channel(self, board: str) -> str:
        return f"{self.board_channels}{{{board}}}"

    async def publish(self, *events: Event) -> None:
        """All events in one round trip. An event Redis did not take (all of them while it is
        away; on a cluster, those of a master that failed while the others took theirs) is
        delivered to this instance's handlers directly, the others come back through the
        subscription: each event reaches each handler once."""
        # During a known outage skip Redis: each attempt would cost the client's retries.
        if self.subscribed or not self._outage:
            try:
                if (wire := wire_of(self._redis)) is not None:
                    commands = [("PUBLISH", self.channel(e), _encode(e)) for e in events]
                    replies = await wire.call_many(commands)
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for event in events:
                            if self._cluster is not None:  # to the master of the channel's slot
                                pipe.spublish(self.channel(event), _encode(event))
                            else:
                                pipe.publish(self.channel(event), _encode(event))
                        replies = await pipe.execute(raise_on_error=False)
            except REDIS_DOWN as exc:
                if not self._outage:
                    log.warning("score_event_publish_failed", error=str(exc) or type(exc).__name__)
            else:
                failed = [isinstance(reply, Exception) for reply in replies]
                if any(failed) and not self._outage:
                    log.warning("score_event_publish_failed", failed=sum(failed))
                if self.subscribed:  # our own subscription brings the others back
                    events = tuple(
                        event
                        for event, lost in zip(events, failed, strict=True)
                        if lost or not self._hears(self.channel(event))
                    )
        for event in events:
            await self._deliver(event)

    def _hears(self, channel: str) -> bool:
        """Whether our subscription covers the channel (a pattern covers every board; shard
        subscriptions only the boards known when they were made)."""
        return self._cluster is None or channel in self._channels

    async def _deliver(self, event: Event) -> None:
        for handler in self._handlers:
            try:
                await handler(event)
            except Exception:  # one failing handler must not starve the others
                log.exception("score_event_handler_failed", kind=type(event).__name__)

    async def _listen(self) -> None:
        delay = FIRST_RETRY
        while True:
            try:
                if self._cluster is not None:
                    await self._listen_sharded(self._cluster)
                    delay = FIRST_RETRY
                    continue  # the boards or the slot owners changed: subscribe again, now
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(self.pattern)
                    await pubsub.subscribe(self.control)
                    async for message in pubsub.listen():
                        await self._on_message(message)
                        delay = FIRST_RETRY
            except REDIS_DOWN as exc:
                if self._subscribed.is_set():  # it was up: the backoff starts afresh
                    delay = FIRST_RETRY
                if not self._outage:
                    self._outage = True
                    log.warning("score_events_unavailable", error=str(exc) or type(exc).__name__)
            finally:
                self._subscribed.clear()
                self._channels = set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY)

    def _wanted(self) -> set[str]:
        return {self.control, *(self.board_channel(board) for board in self._boards())}

    async def _listen_sharded(self, cluster: RedisCluster) -> None:
        """Subscribe every channel on the master that owns its slot, one connection per
        master; return when the boards change, raise when a connection fails or a node ends
        a subscription (a failover or a slot move)."""
        channels = self._wanted()
        await cluster.nodes_manager.initialize()  # a fresh slot map: who owns what now
        by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
        for channel in sorted(channels):
            node = cluster.get_node_from_key(channel)
            if node is None:
                raise RedisConnectionError(f"no master serves the slot of {channel}")
            by_node.setdefault(node.name, (node, []))[1].append(channel)
        owners = {channel: name for name, (_, names) in by_node.items() for channel in names}
        confirmed = [0]
        async with contextlib.AsyncExitStack() as stack:
            readers = []
            for node, names in by_node.values():
                pool = ConnectionPool(
                    connection_class=node.connection_class,
                    max_connections=1,
                    **node.connection_kwargs,
                )
                client = Redis(connection_pool=pool)
                stack.push_async_callback(client.aclose, close_connection_pool=True)
                pubsub = client.pubsub()
                stack.push_async_callback(pubsub.aclose)
                for name in names:  # one slot per SSUBSCRIBE
                    await pubsub.ssubscribe(name)
                readers.append(self._read_shards(pubsub, confirmed, channels))
            watching = [asyncio.create_task(reader) for reader in readers]
            watching.append(asyncio.create_task(self._until_changed(cluster, owners)))
            try:
                done, _ = await asyncio.wait(watching, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in watching:
                    task.cancel()
                await asyncio.gather(*watching, return_exceptions=True)
            for task in done:
                task.result()  # a reader's error goes up; the watcher just returns

    async def _read_shards(self, pubsub: PubSub, confirmed: list[int], channels: set[str]) -> None:
        async for message in pubsub.listen():
            kind = message["type"]
            if kind == "ssubscribe":
                confirmed[0] += 1
                if confirmed[0] == len(channels):
                    self._channels = channels
                    self._on_subscribed()
            elif kind == "sunsubscribe":  # the node gave the slot away: failover or move
                return  # subscribe again from a fresh slot map, at once
            elif kind == "smessage":
                control = _text(message["channel"]) == self.control
                await self._on_event(message, _decode_boards if control else _decode_score)

    async def _until_changed(self, cluster: RedisCluster, owners: dict[str, str]) -> None:
        """Return when a board appears or a channel's slot has another master: a master that
        hangs (no reset ever reaches its subscribers) is noticed once its replica takes
        over. Looks every ``BOARDS_CHECK`` seconds, and at once when the boards change."""
        while self._wanted() <= owners.keys():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BOARDS_CHECK):
                    await self._boards_changed.wait()
            if self._boards_changed.is_set():
                self._boards_changed.clear()
                continue
            await cluster.nodes_manager.initialize()
            for channel, name in owners.items():
                node = cluster.get_node_from_key(channel)
                if node is None or node.name != name:
                    log.info("score_events_slot_moved", channel=channel)
                    return

    def _on_subscribed(self) -> None:
        self._subscribed.set()
        if self._outage:
            self._outage = False
            log.info("score_events_restored")

    async def _on_message(self, message: dict[str, Any]) -> None:
        # The control subscription is confirmed after the pattern's: both are in place.
        if message["type"] == "subscribe":
            self._on_subscribed()
        elif message["type"] in ("message", "pmessage"):
            decode = _decode_score if message["type"] == "pmessage" else _decode_boards
            await self._on_event(message, decode)

    async def _on_event(self, message: dict[str, Any], decode: Callable[[bytes], Event]) -> None:
        try:
            event = decode(message["data"])
        except msgspec.DecodeError:
            log.warning("score_event_malformed", channel=str(message.get("channel")))
            return
        await self._deliver(event)
        if isinstance(event, BoardsChanged):
            self._boards_changed.set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
