"""Rate limits on sliding windows (the `limits` library: memory, or Redis for many instances).

A refused request gets 429 with Retry-After and the IETF draft RateLimit-Policy/RateLimit
headers. If the storage itself fails (Redis away), requests are let through and a warning is
logged: losing a limit for a minute is better than refusing every player.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import limits
import structlog
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from scoreboard.config import Settings
from scoreboard.errors import ScoreboardError
from scoreboard.metrics import Metrics
from scoreboard.redis_urls import REDIS_DOWN, RedisClient, parse_redis_url
from scoreboard.redis_wire import HotScript

log = structlog.get_logger("scoreboard.ratelimit")


@dataclass(frozen=True, slots=True)
class Rate:
    name: str
    item: limits.RateLimitItem

    @classmethod
    def parse(cls, name: str, text: str) -> Rate:
        return cls(name, limits.parse(text))

    @property
    def window(self) -> int:
        return int(self.item.get_expiry())


class RateLimited(ScoreboardError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, rate: Rate, reset_in: float, remaining: int = 0) -> None:
        retry = max(1, math.ceil(reset_in))
        super().__init__(
            f"at most {rate.item.amount} per {rate.window} s ({rate.name}); retry in {retry} s",
            headers={
                "Retry-After": str(retry),
                "RateLimit-Policy": f'"{rate.name}";q={rate.item.amount};w={rate.window}',
                "RateLimit": f'"{rate.name}";r={remaining};t={retry}',
            },
        )


@dataclass(frozen=True, slots=True)
class Count:
    """One window to count a request against, as part of a group (``RateLimiter.count_all``).
    A blocking window over its limit refuses the whole group; any other is only reported."""

    rate: Rate
    cost: int
    blocking: bool


@dataclass(frozen=True, slots=True)
class Counted:
    """What counting a group found, by position in the group: the blocking window that
    refused it (then nothing was counted), or the other windows that were over their limit
    (not counted; the rest were)."""

    refused: int | None = None
    over: tuple[int, ...] = ()
    # The refusing window's state, for the 429's headers: what is left of its limit and the
    # seconds until some of it is free again (not compared: a result is what was refused).
    remaining: int = field(default=0, compare=False)
    reset_in: float = field(default=0.0, compare=False)


# Every window of a group in one call: the sliding-window counter of ``limits``
# (acquire_sliding_window.lua), first looking at every window, then counting. KEYS: each
# window's previous and current counter; ARGV: per window limit, expiry (s), cost, blocking.
# Reply: {0, the flagging windows over their limit...}, or for a refusal {the blocking
# window, its previous count and TTL (ms), its current count and TTL (ms)}.
COUNT_ALL = """
local n = #KEYS / 2
local weighted, state = {}, {}
for i = 1, n do
    local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
    local expiry = tonumber(ARGV[4 * i - 2]) * 1000
    local current_ttl = tonumber(redis.call('pttl', current))
    if current_ttl > 0 and current_ttl < expiry then
        redis.call('rename', current, previous)
        redis.call('set', current, 0, 'PX', current_ttl + expiry)
    end
    local previous_count = tonumber(redis.call('get', previous)) or 0
    local previous_ttl = math.max(tonumber(redis.call('pttl', previous)) or 0, 0)
    local current_count = tonumber(redis.call('get', current)) or 0
    weighted[i] = math.floor(previous_count * previous_ttl / expiry) + current_count
    state[i] = {previous_count, previous_ttl, current_count}
end
local over = {}
for i = 1, n do
    local limit, cost = tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 1])
    if limit <= 0 or weighted[i] + cost > limit then
        if ARGV[4 * i] == '1' then
            local left = math.max(tonumber(redis.call('pttl', KEYS[2 * i])), 0)
            return {i, state[i][1], state[i][2], state[i][3], left}
        end
        over[i] = true
    end
end
local found = {0}
for i = 1, n do
    if over[i] then
        table.insert(found, i)
    else
        local current, cost = KEYS[2 * i], tonumber(ARGV[4 * i - 1])
        if redis.call('exists', current) == 1 then
            redis.call('incrby', current, cost)
        else
            redis.call('set', current, cost, 'PX', tonumber(ARGV[4 * i - 2]) * 2000)
        end
    end
end
return found
"""


class RateLimiter:
    def __init__(
        self,
        storage_url: str,
        key_prefix: str = "scoreboard:limits",
        pool: Any = None,
        metrics: Metrics | None = None,
        redis: RedisClient | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        # Groups of windows (count_all) are counted in one script call on this client (the
        # service's own, when the limits are kept in its Redis), else window by window.
        self._redis = redis
        self._key_prefix = key_prefix
        self._count_all = HotScript(redis, COUNT_ALL) if redis is not None else None
        # The async flavour of any limits storage URL: memory://, redis://, redis+cluster://,
        # redis+sentinel://... Keys go under the service's own prefix, so deployments sharing
        # a Redis never share counters. Redis is always spoken to with redis-py; with ``pool``
        # (the service's own pool, one server) the counters use its connections.
        async_url = storage_url if storage_url.startswith("async+") else "async+" + storage_url
        options: dict[str, Any] = {"key_prefix": key_prefix}
        if pool is not None:
            options |= {"implementation": "redispy", "connection_pool": pool}
        elif async_url.startswith("async+redis"):  # its own clients: bounded waits
            options |= {"implementation": "redispy", "socket_timeout": 2}
            options["socket_connect_timeout"] = 2
            async_url = _for_limits(async_url, options)
        storage = storage_from_string(async_url, **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"{storage_url} is not an asynchronous rate-limit storage")
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)

    async def hit(self, rate: Rate, key: str, cost: int = 1) -> bool:
        """Count `cost` against the window; False when that exceeds the rate."""
        if self._count_all is not None:
            return (await self.count_all(key, [Count(rate, cost, blocking=True)])).refused is None
        try:
            return await self._limiter.hit(rate.item, rate.name, key, cost=cost)
        except Exception as exc:  # storage down: fail open, loudly
            log.warning("rate_limit_storage_failed", rate=rate.name, error=type(exc).__name__)
            return True

    async def test(self, rate: Rate, key: str, cost: int = 1) -> bool:
        """Would `cost` more fit in the window? Counts nothing."""
        try:
            return await self._limiter.test(rate.item, rate.name, key, cost=cost)
        except Exception as exc:
            log.warning("rate_limit_storage_failed", rate=rate.name, error=type(exc).__name__)
            return True

    async def count_all(self, key: str, counts: Sequence[Count]) -> Counted:
        """Count a request against several windows of one key at once: if any blocking window
        would go over its limit, nothing is counted; otherwise every window that stays within
        its limit is counted. On Redis one atomic call, so parallel requests cannot all slip
        under a blocking limit. Storage down: everything fits (fail open, loudly)."""
        if not counts:
            return Counted()
        if self._count_all is None:
            return await self._count_each(key, counts)
        # One hash tag for all of the key's windows, free of braces whatever the key holds
        # (a user id may: "}x" would leave an empty tag, each window in a slot of its own).
        tag = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        keys: list[str] = []
        args: list[int | str] = []
        for count in counts:
            item = count.rate.item
            window = f"{count.rate.name}:{item.amount}/{count.rate.window}"
            current = f"{self._key_prefix}:w:{{{tag}}}:{key}:{window}"
            keys += [f"{current}/-1", current]
            args += [item.amount, count.rate.window, count.cost, "1" if count.blocking else "0"]
        try:
            reply = await self._count_all(keys=keys, args=args)
        except REDIS_DOWN as exc:
            log.warning("rate_limit_storage_failed", rate="count_all", error=type(exc).__name__)
            return Counted()
        if reply[0]:
            refused = int(reply[0]) - 1
            rate = counts[refused].rate
            remaining, reset_in = _window_state(rate, *(int(value) for value in reply[1:5]))
            return Counted(refused=refused, remaining=remaining, reset_in=reset_in)
        return Counted(over=tuple(int(i) - 1 for i in reply[1:]))

    async def _count_each(self, key: str, counts: Sequence[Count]) -> Counted:
        """count_all window by window (an in-process store costs no round trips): test the
        blocking windows, then count every window, blocking first. Atomic per window only: of
        parallel requests, the one that loses a race for a blocking window is refused when
        counted, and the windows counted before it keep its count. One window alone is one hit
        (a hit over the limit counts nothing: there is nothing to look at first)."""
        if len(counts) == 1:
            count = counts[0]
            if await self._fits(count, key, counting=True):
                return Counted()
            return await self._refusal(0, count.rate, key) if count.blocking else Counted(over=(0,))
        for i, count in enumerate(counts):
            if count.blocking and not await self._fits(count, key, counting=False):
                return await self._refusal(i, count.rate, key)
        over: list[int] = []
        for i, count in sorted(enumerate(counts), key=lambda pair: not pair[1].blocking):
            if await self._fits(count, key, counting=True):
                continue
            if count.blocking:
                return await self._refusal(i, count.rate, key)
            over.append(i)
        return Counted(over=tuple(sorted(over)))

    async def _refusal(self, i: int, rate: Rate, key: str) -> Counted:
        try:
            stats = await self._limiter.get_window_stats(rate.item, rate.name, key)
            reset_in, remaining = stats.reset_time - time.time(), stats.remaining
        except Exception:
            reset_in, remaining = float(rate.window), 0
        return Counted(refused=i, remaining=remaining, reset_in=reset_in)

    async def _fits(self, count: Count, key: str, *, counting: bool) -> bool:
        if count.rate.item.amount <= 0:
            return False
        if counting:
            return await self.hit(count.rate, key, count.cost)
        return await self.test(count.rate, key, count.cost)

    async def enforce(self, rate: Rate, key: str, cost: int = 1) -> None:
        """Count `cost` against the window, or raise RateLimited (counting nothing)."""
        counted = await self.count_all(key, [Count(rate, cost, blocking=True)])
        if counted.refused is not None:
            self.refuse(rate, counted)

    def refuse(self, rate: Rate, counted: Counted) -> NoReturn:
        """The 429 for a window ``count_all`` found over its limit."""
        self._metrics.rate_limited.labels(rate.name).inc()
        raise RateLimited(rate, counted.reset_in, counted.remaining)

    async def reset(self) -> None:
        await self._storage.reset()


def _window_state(
    rate: Rate, previous: int, previous_ttl: int, current: int, current_ttl: int
) -> tuple[int, float]:
    """What is left of a sliding window's limit, and the seconds until some of it is free
    again, from its two counters and their TTLs (ms): as ``limits`` reckons its window stats."""
    expiry = rate.window
    previous_in, current_in = max(previous_ttl, 0) / 1000, max(current_ttl, 0) / 1000
    weighted = previous * previous_in / expiry + current
    remaining = max(0, rate.item.amount - math.floor(weighted))
    reset_in = math.inf
    # A remainder of 0 is a whole period (a counter read in the millisecond it was set has
    # exactly its full TTL), not "free now".
    if previous:
        reset_in = previous_in % (expiry / previous) or expiry / previous
    if current:
        reset_in = min(reset_in, current_in % expiry or expiry)
    return remaining, 0.0 if reset_in == math.inf else reset_in


def _for_limits(async_url: str, options: dict[str, Any]) -> str:
    """A cluster or Sentinel URL as ``limits`` reads it: no credentials in it (``limits``
    would neither decode them nor keep them out of its errors) and no ``rediss+`` scheme
    (which it does not know): they become options."""
    url = async_url.removeprefix("async+")
    target = parse_redis_url(url)
    if target.topology == "single":
        return async_url
    options |= {"username": target.username, "password": target.password}
    if target.tls:
        options["ssl"] = True
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target.nodes)
    tail = f"/{target.master}" if target.master else ""
    return f"async+redis+{target.topology}://{hosts}{tail}"


@dataclass(frozen=True, slots=True)
class Rates:
    """The configured rates, by what they protect."""

    per_ip: Rate
    actions_per_user: Rate
    updates_per_user: Rate
    ws_connects_per_ip: Rate

    def all(self) -> tuple[Rate, ...]:
        return (self.per_ip, self.actions_per_user, self.updates_per_user, self.ws_connects_per_ip)

    @classmethod
    def from_settings(cls, settings: Settings) -> Rates:
        return cls(
            per_ip=Rate.parse("ip", settings.rate_limit_ip),
            actions_per_user=Rate.parse("actions", settings.rate_limit_actions),
            updates_per_user=Rate.parse("updates", settings.rate_limit_updates),
            ws_connects_per_ip=Rate.parse("ws-connect", settings.rate_limit_ws_connect),
        )


class PerAddressLimit(ASGIMiddleware):
    """Every HTTP request counts against its client address (probes excepted)."""

    scopes = (ScopeType.HTTP,)
    exclude_path_pattern = ("^/healthz$", "^/readyz$", "^/metrics$")

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        state = scope["litestar_app"].state
        client = scope.get("client")
        await state.rate_limiter.enforce(state.rates.per_ip, client[0] if client else "unknown")
        await next_app(scope, receive, send)


def per_user(rate_of: Callable[[Rates], Rate]) -> Callable[..., Awaitable[None]]:
    """A guard: the authenticated user's requests count against a rate."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        state = connection.app.state
        user = connection.scope.get("user")
        if user is not None:
            await state.rate_limiter.enforce(rate_of(state.rates), user.user_id)

    return guard
