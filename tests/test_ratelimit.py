"""Rate-limit and velocity windows live under the service's Redis prefix, so deployments (and
test runs) sharing one Redis never share counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from scoreboard.ratelimit import Count, Counted, Rate, RateLimited, RateLimiter, _for_limits
from tests.redis_support import async_client

pytest_plugins = ["tests.redis_support"]


async def test_windows_are_kept_under_the_configured_prefix(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    rate = Rate.parse("updates", "2/day")  # no window boundary in the middle of the test
    ours = RateLimiter(redis_url, key_prefix=f"{redis_prefix}limits")
    theirs = RateLimiter(redis_url, key_prefix=f"{redis_prefix}other-deployment:limits")
    assert await ours.hit(rate, "alice")
    assert await ours.hit(rate, "alice")
    assert not await ours.hit(rate, "alice")  # the third in a minute is refused
    assert await theirs.hit(rate, "alice")  # the same user elsewhere counts apart
    keys = [key.decode() async for key in redis_client.scan_iter(f"{redis_prefix}*")]
    assert any(key.startswith(f"{redis_prefix}limits:") for key in keys), keys
    assert any(key.startswith(f"{redis_prefix}other-deployment:limits:") for key in keys)


def test_a_cluster_or_sentinel_url_reaches_limits_without_its_credentials() -> None:
    """`limits` neither decodes a URL's credentials nor keeps them out of its errors, and
    does not know rediss+cluster://: they go to it as options."""
    options: dict[str, object] = {}
    url = _for_limits("async+rediss+cluster://app:p%40ss@a:7000,[::1]:7001", options)
    assert url == "async+redis+cluster://a:7000,[::1]:7001"
    assert options == {"username": "app", "password": "p@ss", "ssl": True}
    options = {}
    url = _for_limits("async+redis+sentinel://:pw@s1,s2:26380/main", options)
    assert url == "async+redis+sentinel://s1:26379,s2:26380/main"
    assert options == {"username": None, "password": "pw"}
    assert _for_limits("async+redis://:pw@h:6379/1", {}) == "async+redis://:pw@h:6379/1"


# -- groups of windows counted at once (the velocity rules of a score update) --

BLOCK = Rate.parse("block", "3/day")  # no window boundary in the middle of a test
FLAG = Rate.parse("flag", "2/day")
OTHER = Rate.parse("other", "100/day")


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[RateLimiter]:
    """The in-process store (window by window) and the service's Redis (one script call)."""
    if request.param == "memory":
        yield RateLimiter("memory://")
        return
    url = request.getfixturevalue("redis_url")
    client = async_client(url)
    yield RateLimiter(url, key_prefix=f"{redis_prefix}limits", redis=client)
    await client.aclose()


async def test_a_group_a_blocking_window_refuses_counts_in_no_window(
    limiter: RateLimiter,
) -> None:
    """Guards against counting before looking: a refused completion must spend no budget."""
    group = [Count(OTHER, 1, blocking=True), Count(BLOCK, 2, blocking=True)]
    assert await limiter.count_all("ann", group) == Counted()  # block: 2 of 3
    assert await limiter.count_all("ann", group) == Counted(refused=1)  # 4 > 3: nothing counted
    assert await limiter.count_all("ann", [Count(BLOCK, 1, blocking=True)]) == Counted()  # 3 of 3
    assert await limiter.count_all("ann", [Count(OTHER, 99, blocking=True)]) == Counted()
    assert await limiter.count_all("ann", [Count(OTHER, 1, blocking=True)]) == Counted(refused=0)
    assert await limiter.count_all("bob", group) == Counted()  # another key counts apart


async def test_a_refusal_says_what_is_left_and_when_to_retry(limiter: RateLimiter) -> None:
    """The 429 of either store: the refusing window's remaining budget and a Retry-After
    within its window, and nothing counted (the smaller request still fits)."""
    await limiter.enforce(BLOCK, "ann", 2)
    with pytest.raises(RateLimited) as refused:
        await limiter.enforce(BLOCK, "ann", 2)  # 2 + 2 > 3
    headers = refused.value.headers
    assert headers["RateLimit"].startswith('"block";r=1;t=')
    assert 1 <= int(headers["Retry-After"]) <= 86_400
    assert headers["RateLimit-Policy"] == '"block";q=3;w=86400'
    await limiter.enforce(BLOCK, "ann", 1)  # 3 of 3
    counted = await limiter.count_all("ann", [Count(OTHER, 1, True), Count(BLOCK, 1, True)])
    assert (counted.refused, counted.remaining) == (1, 0)
    assert 0 < counted.reset_in <= 86_400


async def test_a_window_over_its_limit_is_reported_and_the_others_counted(
    limiter: RateLimiter,
) -> None:
    group = [Count(FLAG, 1, blocking=False), Count(BLOCK, 1, blocking=True)]
    assert await limiter.count_all("ann", group) == Counted()
    assert await limiter.count_all("ann", group) == Counted()
    assert await limiter.count_all("ann", group) == Counted(over=(0,))  # flag: 3 > 2, not counted
    assert await limiter.count_all("ann", group) == Counted(refused=1)  # block was counted: 4 > 3
    zero = Rate.parse("never", "0/day")
    assert await limiter.count_all("ann", [Count(zero, 1, blocking=False)]) == Counted(over=(0,))


async def test_parallel_groups_cannot_slip_under_a_blocking_limit_in_redis(
    redis_url: str, redis_prefix: str
) -> None:
    """Forty completions at once against a limit of 3, from two instances (two clients):
    exactly three get through, and the flagging window counts only those."""
    clients = [async_client(redis_url), async_client(redis_url)]
    limiters = [
        RateLimiter(redis_url, key_prefix=f"{redis_prefix}limits", redis=c) for c in clients
    ]
    try:
        group = [Count(OTHER, 1, blocking=False), Count(BLOCK, 1, blocking=True)]
        for limiter in limiters:  # connected, and the script loaded: the race is the counting
            await limiter.count_all("warm-up", group)
        results = await asyncio.gather(
            *(limiters[i % 2].count_all("ann", group) for i in range(40))
        )
        assert sum(r == Counted() for r in results) == 3
        assert sum(r == Counted(refused=1) for r in results) == 37
        spent = [Count(OTHER, 97, blocking=True)]  # 3 counted: exactly 97 more fit
        assert await limiters[0].count_all("ann", spent) == Counted()
        assert await limiters[0].count_all("ann", [Count(OTHER, 1, blocking=True)]) == Counted(
            refused=0
        )
    finally:
        for client in clients:
            await client.aclose()


async def test_a_group_is_one_call_to_redis(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All the windows of a completion in one round trip (they were five calls)."""
    client = async_client(redis_url)
    limiter = RateLimiter(redis_url, key_prefix=f"{redis_prefix}limits", redis=client)
    group = [Count(BLOCK, 1, True), Count(FLAG, 1, False), Count(OTHER, 1, True)]
    await limiter.count_all("ann", group)  # loads the script
    sent: list[object] = []
    send = client.execute_command

    async def counted(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return await send(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counted)
    try:
        assert await limiter.count_all("ann", group) == Counted()
        assert sent == ["EVALSHA"]
        assert await limiter.count_all("ann", []) == Counted()  # every rule off: no call
        assert sent == ["EVALSHA"]
    finally:
        monkeypatch.undo()
        await client.aclose()


async def test_a_group_fits_when_redis_is_down(dead_redis_client: Redis) -> None:
    """Fail open, as every limit does: losing a window for a minute beats refusing players."""
    limiter = RateLimiter("memory://", redis=dead_redis_client)
    assert await limiter.count_all("ann", [Count(BLOCK, 99, blocking=True)]) == Counted()


@pytest.mark.parametrize("user", ["}x", "{a}", "a}b{c", "x:1"])
async def test_a_user_id_with_braces_keeps_its_windows_together_in_redis(
    redis_url: str, redis_prefix: str, user: str
) -> None:
    """User ids may hold braces. On a cluster, "}x" in a hash tag left the tag empty and each
    window in a slot of its own: every script call was refused by the client, and failing
    open let every completion through. Guards against the tag holding the id itself."""
    client = async_client(redis_url)
    limiter = RateLimiter(redis_url, key_prefix=f"{redis_prefix}limits", redis=client)
    try:
        group = [Count(OTHER, 1, True), Count(FLAG, 1, False), Count(BLOCK, 1, True)]
        assert [await limiter.count_all(user, group) for _ in range(4)] == [
            Counted(),
            Counted(),
            Counted(over=(1,)),
            Counted(refused=2),
        ]
        assert await limiter.count_all(f"{user}-other", group) == Counted()
    finally:
        await client.aclose()


async def test_a_window_that_has_passed_counts_again(limiter: RateLimiter) -> None:
    """The sliding window moves on: what the last window counted weighs less and less, and
    after two windows nothing (the script's shift of the current window to the previous)."""
    second = Rate.parse("second", "2/second")
    group = [Count(second, 1, blocking=True)]
    assert [await limiter.count_all("ann", group) for _ in range(3)] == [
        Counted(),
        Counted(),
        Counted(refused=0),
    ]
    await asyncio.sleep(2.1)
    assert [await limiter.count_all("ann", group) for _ in range(3)] == [
        Counted(),
        Counted(),
        Counted(refused=0),
    ]
