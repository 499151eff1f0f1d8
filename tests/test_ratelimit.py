"""Rate-limit and velocity windows live under the service's Redis prefix, so deployments (and
test runs) sharing one Redis never share counters."""

from __future__ import annotations

from redis.asyncio import Redis

from scoreboard.ratelimit import Rate, RateLimiter

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
