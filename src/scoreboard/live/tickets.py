"""Single-use WebSocket tickets: browsers cannot set an Authorization header on a WebSocket,
so they trade their token for a short-lived ticket and pass it as ``?ticket=``."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Protocol, runtime_checkable

from scoreboard.auth.principal import Principal
from scoreboard.errors import ScoreboardError, ServiceUnavailable

TICKET_TTL = 30.0


class TooManyTickets(ScoreboardError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self) -> None:
        super().__init__(
            "too many unused WebSocket tickets for this user; use one or wait",
            headers={"Retry-After": str(int(TICKET_TTL))},
        )


@runtime_checkable
class WsTicketStore(Protocol):
    async def issue(self, principal: Principal) -> tuple[str, float]: ...

    async def redeem(self, ticket: str) -> Principal | None:
        """The principal the ticket was issued to, once; None if unknown, used or expired."""
        ...


class MemoryWsTicketStore:
    """In-process tickets. Every ticket lives exactly TICKET_TTL, so insertion order is
    expiry order and pruning only ever looks at the oldest entries."""

    def __init__(self, max_per_user: int = 20, max_tickets: int = 100_000) -> None:
        self._tickets: dict[str, tuple[Principal, float]] = {}
        self._per_user: Counter[str] = Counter()
        self._max_per_user = max_per_user
        self._max = max_tickets

    def _prune(self, now: float) -> None:
        while self._tickets:
            ticket, (principal, expires_at) = next(iter(self._tickets.items()))
            if expires_at > now:
                return
            self._forget(ticket, principal)

    def _forget(self, ticket: str, principal: Principal) -> None:
        del self._tickets[ticket]
        self._per_user[principal.user_id] -= 1
        if self._per_user[principal.user_id] <= 0:
            del self._per_user[principal.user_id]

    async def issue(self, principal: Principal) -> tuple[str, float]:
        now = time.time()
        self._prune(now)
        if self._per_user[principal.user_id] >= self._max_per_user:
            raise TooManyTickets
        if len(self._tickets) >= self._max:
            raise ServiceUnavailable("too many outstanding WebSocket tickets; retry shortly")
        ticket = secrets.token_urlsafe(32)
        expires_at = now + TICKET_TTL
        self._tickets[ticket] = (principal, expires_at)
        self._per_user[principal.user_id] += 1
        return ticket, expires_at

    async def redeem(self, ticket: str) -> Principal | None:
        entry = self._tickets.get(ticket)
        if entry is None:
            return None
        self._forget(ticket, entry[0])
        return entry[0] if entry[1] >= time.time() else None
