"""WebSocket tickets in Redis, so a ticket issued by one instance can be redeemed on any
other, exactly once (GETDEL is atomic across instances).

Each user's outstanding tickets sit in a sorted set scored by expiry time: expired ones are
trimmed on every issue, so the cap counts only tickets that could still be used (a plain
counter would keep counting tickets that expired unused).
"""

from __future__ import annotations

import contextlib
import secrets
import time

import msgspec

from scoreboard.auth.principal import Principal
from scoreboard.errors import ServiceUnavailable
from scoreboard.live.tickets import TICKET_TTL, TooManyTickets
from scoreboard.redis_urls import REDIS_DOWN, RedisClient

MAX_TICKET_LENGTH = 64  # issued tickets are 43 characters; anything longer is not ours

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Principal).decode


class RedisWsTicketStore:
    def __init__(self, redis: RedisClient, prefix: str, max_per_user: int = 20) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_per_user = max_per_user

    def _ticket_key(self, ticket: str) -> str:
        return f"{self._prefix}ws-ticket:{ticket}"

    def _outstanding_key(self, user_id: str) -> str:
        return f"{self._prefix}ws-tickets-of:{{{user_id}}}"  # one user's: one slot

    async def issue(self, principal: Principal) -> tuple[str, float]:
        ticket = secrets.token_urlsafe(32)
        now = time.time()
        expires_at = now + TICKET_TTL
        outstanding = self._outstanding_key(principal.user_id)
        ttl_ms = int(TICKET_TTL * 1000)
        try:
            # Add first, then count (one key, so atomic on a cluster too): two instances
            # issuing at once can both be refused at the cap, never both let through above
            # it. The ticket itself (another slot) is stored only once it is within the cap.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(outstanding, "-inf", now)
                pipe.zadd(outstanding, {ticket: expires_at})
                pipe.zcard(outstanding)
                pipe.pexpire(outstanding, ttl_ms)
                count = (await pipe.execute())[2]
            if count > self._max_per_user:
                await self._redis.zrem(outstanding, ticket)
            else:
                await self._redis.set(self._ticket_key(ticket), _encode(principal), px=ttl_ms)
        except REDIS_DOWN as exc:
            raise ServiceUnavailable("WebSocket tickets are unavailable; retry shortly") from exc
        if count > self._max_per_user:
            raise TooManyTickets
        return ticket, expires_at

    async def redeem(self, ticket: str) -> Principal | None:
        if len(ticket) > MAX_TICKET_LENGTH:
            return None
        try:
            raw = await self._redis.getdel(self._ticket_key(ticket))
        except REDIS_DOWN as exc:
            raise ServiceUnavailable("WebSocket tickets are unavailable; retry shortly") from exc
        if raw is None:
            return None
        principal = _decode(raw)
        # Only bookkeeping for the cap: the entry would also be trimmed once it expires.
        with contextlib.suppress(*REDIS_DOWN):
            await self._redis.zrem(self._outstanding_key(principal.user_id), ticket)
        return principal
