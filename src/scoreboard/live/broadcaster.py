"""How score changes reach the hubs that push them to clients.

The embedded shape delivers in-process; the Redis shape (production) implements the same
protocol over pub/sub so a change on any instance reaches clients on every instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ScoreEvent:
    user_id: str
    new_score: int
    rank: int


Handler = Callable[[ScoreEvent], Awaitable[None]]


class Broadcaster(Protocol):
    async def publish(self, event: ScoreEvent) -> None: ...

    def subscribe(self, handler: Handler) -> None: ...


class LocalBroadcaster:
    """In-process delivery: every subscriber hears every event, at once."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    async def publish(self, event: ScoreEvent) -> None:
        for handler in self._handlers:
            await handler(event)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)
