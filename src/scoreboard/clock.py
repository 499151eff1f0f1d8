"""The service's clock: one function every part asks for "now", so tests can move time
(period boundaries, daylight saving time) without waiting for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)
