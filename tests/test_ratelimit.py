"""Rate-limit and velocity windows live under the service's Redis prefix, so deployments (and
test runs) sharing one Redis never share counters."""

from __future__ import annotations

from redis.asyncio import Redis

from scoreboard.ratelimit import Rate, RateLimiter, _for_limits

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
