"""Single-use WebSocket tickets: browsers cannot set an Authorization header on a WebSocket,
so they trade their token for a short-lived ticket and pass it as ``?ticket=``."""

from __future__ import annotations

import secrets
import time
from typing import Protocol, runtime_checkable

from scoreboard.auth.principal import Principal

TICKET_TTL = 30.0


@runtime_checkable
class WsTicketStore(Protocol):
    async def issue(self, principal: Principal) -> tuple[str, float]: ...

    async def redeem(self, ticket: str) -> Principal | None:
        """The principal the ticket was issued to, once; None if unknown, used or expired."""
        ...


class MemoryWsTicketStore:
    def __init__(self, max_tickets: int = 100_000) -> None:
        self._tickets: dict[str, tuple[Principal, float]] = {}
        self._max = max_tickets

    async def issue(self, principal: Principal) -> tuple[str, float]:
        now = time.time()
        if len(self._tickets) >= self._max:
            self._tickets = {t: v for t, v in self._tickets.items() if v[1] > now}
        if len(self._tickets) >= self._max:
            raise OverflowError("too many outstanding WebSocket tickets")
        ticket = secrets.token_urlsafe(32)
        expires_at = now + TICKET_TTL
        self._tickets[ticket] = (principal, expires_at)
        return ticket, expires_at

    async def redeem(self, ticket: str) -> Principal | None:
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]
