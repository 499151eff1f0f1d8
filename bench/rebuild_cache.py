"""How long a full rebuild of the Redis ranking cache takes, against a floor measured in the
same run on the same Redis:

- rebuild: ``RedisRanking.replace_all`` of N users (three structures loaded into temporary
  keys in pipelined batches, then swapped in atomically), plus one drift check over them;
- floor: a bare pipelined ``ZADD`` of the same N members into one key, in the same batches
  (the least any rebuild that keeps the spec's sorted set could cost).

Everything is written under a unique key prefix and deleted afterwards.
Run: `.venv/bin/python bench/rebuild_cache.py --users 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from scoreboard.leaderboard.redis_ranking import LOAD_BATCH, RedisRanking  # noqa: E402
from scoreboard.records import BoardPeriod, UserScore  # noqa: E402

KEY = BoardPeriod("global", "all")


def make_users(count: int) -> list[UserScore]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        UserScore(
            user_id=f"user-{i:08d}",
            username=f"Player {i}",
            score=(i * 7919) % 100_000,  # many ties, as real boards have
            version=1 + i % 5,
            last_updated=start + timedelta(milliseconds=i),
        )
        for i in range(count)
    ]


async def zadd_floor(redis: Redis, key: str, users: list[UserScore]) -> float:
    began = time.perf_counter()
    for start in range(0, len(users), LOAD_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {user.user_id: user.score for user in users[start : start + LOAD_BATCH]})
            await pipe.execute()
    return time.perf_counter() - began


async def delete_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for key in keys:
        await redis.unlink(key)


async def main(users_count: int, url: str) -> None:
    redis = Redis.from_url(url, socket_timeout=120)
    prefix = f"bench:{uuid.uuid4().hex}:"
    try:
        users = make_users(users_count)
        floor = await zadd_floor(redis, f"{prefix}floor", users)
        ranking = RedisRanking(redis, prefix)
        began = time.perf_counter()
        await ranking.replace_all(KEY, users)
        rebuild = time.perf_counter() - began
        began = time.perf_counter()
        drift = await ranking.find_drift(KEY, users)
        check = time.perf_counter() - began
        memory = (await redis.info("memory"))["used_memory_human"]
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
    print(f"users:               {users_count:,}")
    print(f"rebuild (swap incl.) {rebuild:8.2f} s   {users_count / rebuild:12,.0f} users/s")
    print(f"floor: bare ZADD     {floor:8.2f} s   {users_count / floor:12,.0f} users/s")
    print(f"rebuild / floor      {rebuild / floor:8.2f} x")
    print(f"drift check          {check:8.2f} s   (found: {drift or 'none'})")
    print(f"redis used memory    {memory} (with the cache loaded)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SCOREBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.users, arguments.redis_url))
