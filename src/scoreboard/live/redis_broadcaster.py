"""Score and board events over Redis pub/sub, so a change accepted on any instance reaches
the live clients of every instance.

Score events go to one channel per board (``<prefix>events:<board>``), board changes to
``<prefix>control``. Each process holds one subscription (a pattern over the board channels
plus the control channel, on one connection; not one per socket or board) in a background
task that hands every event to every local handler. Redis going away never breaks score
updates: events are then delivered to this instance's handlers directly, and the
subscription comes back by itself with capped backoff. Pub/sub is at-most-once: an event
published while a subscriber is reconnecting is lost to it, which the hub absorbs because
every later event refreshes the whole board.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scoreboard.live.broadcaster import Event, Handler
from scoreboard.records import BoardsChanged, ScoreEvent

log = structlog.get_logger("scoreboard.live")
FIRST_RETRY = 0.1
LAST_RETRY = 5.0
REDIS_DOWN = (RedisError, OSError)

STOP_TIMEOUT = 3.0
_encode = msgspec.json.Encoder().encode
_decode_score = msgspec.json.Decoder(ScoreEvent).decode
_decode_boards = msgspec.json.Decoder(BoardsChanged).decode
GLOB_SPECIAL = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


class RedisBroadcaster:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.board_channels = f"{prefix}events:"
        self.pattern = f"{prefix.translate(GLOB_SPECIAL)}events:*"
        self.control = f"{prefix}control"
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
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
            return f"{self.board_channels}{event.board}"
        return self.control

    async def publish(self, *events: Event) -> None:
        """All events in one round trip."""
        # During a known outage skip Redis: each attempt would cost the client's retries.
        if self.subscribed or not self._outage:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event in events:
                        pipe.publish(self.channel(event), _encode(event))
                    await pipe.execute()
            except REDIS_DOWN as exc:
                if not self._outage:
                    log.warning("score_event_publish_failed", error=str(exc) or type(exc).__name__)
            else:
                if self.subscribed:
                    return  # our own subscription brings them back to the local handlers
        for event in events:
            await self._deliver(event)

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
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(self.pattern)
                    await pubsub.subscribe(self.control)
                    async for message in pubsub.listen():
                        await self._on_message(message)
                        delay = FIRST_RETRY
            except REDIS_DOWN as exc:
                if not self._outage:
                    self._outage = True
                    log.warning("score_events_unavailable", error=str(exc) or type(exc).__name__)
            finally:
                self._subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY)

    async def _on_message(self, message: dict[str, Any]) -> None:
        # The control subscription is confirmed after the pattern's: both are in place.
        if message["type"] == "subscribe":
            self._subscribed.set()
            if self._outage:
                self._outage = False
                log.info("score_events_restored")
        elif message["type"] in ("message", "pmessage"):
            decode = _decode_score if message["type"] == "pmessage" else _decode_boards
            event: Event
            try:
                event = decode(message["data"])
            except msgspec.DecodeError:
                log.warning("score_event_malformed", channel=str(message.get("channel")))
                return
            await self._deliver(event)
