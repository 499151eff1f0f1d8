"""How score changes and board changes reach the hubs (and board registries) of every
instance.

The embedded shape delivers in-process; the Redis shape (production) implements the same
protocol over pub/sub, one channel per board, so a change on any instance reaches clients
on every instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from scoreboard.records import BoardsChanged, ScoreEvent

Event = ScoreEvent | BoardsChanged
Handler = Callable[[Event], Awaitable[None]]


class Broadcaster(Protocol):
    async def publish(self, *events: Event) -> None: ...

    def subscribe(self, handler: Handler) -> None: ...


class LocalBroadcaster:
    """In-process delivery: every subscriber hears every event, at once."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    async def publish(self, *events: Event) -> None:
        for event in events:
            for handler in self._handlers:
                await handler(event)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)
