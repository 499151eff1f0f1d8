"""The production ranking: a Redis cache of the committed scores, shared by every instance.

Keys under ``prefix`` (on Redis Cluster give the prefix a hash tag, e.g. ``{scoreboard}:``,
because each script touches several of them):

- ``leaderboard`` ZSET user id → score, the spec's ``ZADD leaderboard {score} {user_id}``;
  a rank is ``1 + ZCOUNT leaderboard (score +inf``.
- ``order`` ZSET of members all at score 0 whose bytes sort in listing order, so the top N
  and a user's neighbours are one ZRANGE by index.
- ``users`` HASH user id → record (version, score, time, order member, username).
- ``revision`` grows with every effective change.

Every write and every listing is one Lua script (``redis_scripts``), hence atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, ResponseError

from scoreboard.leaderboard import redis_scripts as scripts
from scoreboard.leaderboard.ranking import Neighbourhood, RankedEntry
from scoreboard.scores.models import UserScore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
LOAD_BATCH = 10_000  # users per round trip
COMMAND_SIZE = 1_000  # users per command: Redis serves other clients between commands
LOADING_TTL_MS = 3_600_000  # the half-loaded keys of a rebuilder that died vanish on their own


class CachedUser(msgspec.Struct, array_like=True, frozen=True):
    version: int
    score: int
    last_updated_us: int
    order_member: str
    username: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(CachedUser).decode


def cached(user: UserScore) -> CachedUser:
    if not 0 <= user.score < scripts.SCORE_CEILING:
        raise ValueError(f"score {user.score} is outside [0, 2**53) and cannot be ranked")
    at = user.last_updated
    micros = ((at if at.tzinfo else at.replace(tzinfo=UTC)) - EPOCH) // MICROSECOND
    if micros < 0:
        raise ValueError(f"last_updated {at} is before 1970")
    member = (
        f"{scripts.SCORE_CEILING - user.score:0{scripts.SCORE_WIDTH}d}"
        f"|{micros:0{scripts.TIME_WIDTH}d}|{user.user_id}"
    )
    return CachedUser(user.version, user.score, micros, member, user.username)


def _text(value: bytes | str) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


class RankingKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.board = f"{prefix}leaderboard"
        self.order = f"{prefix}order"
        self.users = f"{prefix}users"
        self.structures = [self.board, self.order, self.users]
        self.revision = f"{prefix}revision"
        self.rebuild_lock = f"{prefix}rebuild-lock"
        self.rebuild_journal = f"{prefix}rebuild-journal"

    def loading(self, token: str) -> tuple[str, str, str]:
        """Where a rebuild loads its snapshot before swapping it in."""
        stem = f"{self.prefix}rebuild:{token}:"
        return f"{stem}leaderboard", f"{stem}order", f"{stem}users"


class RedisRanking:
    """A ``Ranking`` in Redis, equal in every result to ``MemoryRanking``."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.keys = RankingKeys(prefix)
        self._apply = redis.register_script(scripts.APPLY)
        self._swap = redis.register_script(scripts.SWAP)
        self._window = redis.register_script(scripts.WINDOW)
        self._held_lock: Lock | None = None

    async def revision(self) -> int:
        return int(await self._redis.get(self.keys.revision) or 0)

    async def apply(self, users: Sequence[UserScore]) -> None:
        if not users:
            return
        args: list[str | int | bytes] = []
        for user in users:
            record = cached(user)
            args += [user.user_id, user.version, user.score, record.order_member, _encode(record)]
        keys = self.keys
        await self._apply(
            keys=[*keys.structures, keys.revision, keys.rebuild_lock, keys.rebuild_journal],
            args=args,
        )

    async def _listing(self, user_id: str, size: int) -> list[RankedEntry] | None:
        """A window of the listing, ranked like ``MemoryRanking._entries``: the first entry
        by counting the users above it, the rest from the run of equal scores."""
        reply: Any = await self._window(keys=self.keys.structures, args=[user_id, size])
        if reply is None:
            return None
        start, above, ids, records = reply
        entries: list[RankedEntry] = []
        for position, (user, raw) in enumerate(zip(ids, records, strict=True), int(start)):
            if raw is None:
                raise ResponseError("ranking cache inconsistent: no record for a listed user")
            record = _decode(raw)
            if not entries:
                rank = int(above) + 1
            elif record.score != entries[-1].score:
                rank = position + 1
            else:
                rank = entries[-1].rank
            entries.append(RankedEntry(_text(user), record.username, record.score, rank))
        return entries

    async def top(self, limit: int) -> list[RankedEntry]:
        if limit <= 0:
            return []
        return await self._listing("", limit) or []

    async def rank_of(self, user_id: str) -> RankedEntry | None:
        entries = await self._listing(user_id, 0)
        return entries[0] if entries else None

    async def around(self, user_id: str, span: int) -> Neighbourhood | None:
        entries = await self._listing(user_id, max(0, span))
        if not entries:
            return None
        position = next(i for i, entry in enumerate(entries) if entry.user_id == user_id)
        return Neighbourhood(
            me=entries[position], above=entries[:position], below=entries[position + 1 :]
        )

    async def replace_all(self, users: Iterable[UserScore]) -> None:
        """Load a snapshot into fresh keys in pipelined batches, then swap it in atomically:
        readers see the old board until the swap, never a half-built one. Changes applied
        while ``rebuild_lock`` is held are journaled and win over an older snapshot."""
        latest = list({user.user_id: user for user in users}.values())  # last wins, as in memory
        loading = self.keys.loading(uuid.uuid4().hex)
        swapped = False
        # Two batches in flight: Python packs the next one while Redis inserts this one.
        in_flight = asyncio.Semaphore(2)

        async def load(batch: Sequence[UserScore]) -> None:
            async with in_flight:
                await self._load(loading, batch)
                if self._held_lock is not None:  # a long rebuild keeps its lock
                    await self._held_lock.reacquire()

        try:
            async with asyncio.TaskGroup() as loads:
                for start in range(0, len(latest), LOAD_BATCH):
                    loads.create_task(load(latest[start : start + LOAD_BATCH]))
            await self._swap(
                keys=[
                    *self.keys.structures,
                    self.keys.revision,
                    *loading,
                    self.keys.rebuild_journal,
                ]
            )
            swapped = True
        except ExceptionGroup as failed:  # raise what went wrong, not the group around it
            raise failed.exceptions[0] from None
        finally:
            if not swapped:
                await self._redis.delete(*loading)

    async def _load(self, loading: tuple[str, str, str], batch: Sequence[UserScore]) -> None:
        board, order, users = loading
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(batch), COMMAND_SIZE):
                chunk = batch[start : start + COMMAND_SIZE]
                records = [cached(user) for user in chunk]
                pipe.zadd(board, {user.user_id: user.score for user in chunk})
                pipe.zadd(order, dict.fromkeys((record.order_member for record in records), 0))
                pipe.hset(
                    users,
                    mapping={u.user_id: _encode(r) for u, r in zip(chunk, records, strict=True)},
                )
            for key in loading:
                pipe.pexpire(key, LOADING_TTL_MS)
            await pipe.execute()

    @asynccontextmanager
    async def rebuild_lock(self, lease_seconds: float = 120.0) -> AsyncIterator[bool]:
        """Yield whether this caller may rebuild: at most one holder across all instances.
        Take it *before* reading the snapshot from the database: from then on every applied
        change is journaled, so a change committed after the snapshot survives the swap."""
        lock = self._redis.lock(self.keys.rebuild_lock, timeout=lease_seconds, blocking=False)
        if not await lock.acquire():
            yield False
            return
        await self._redis.delete(self.keys.rebuild_journal)  # left by a holder that died
        self._held_lock = lock
        try:
            yield True
        finally:
            self._held_lock = None
            if await lock.owned():  # past its lease the journal may be the next holder's
                await self._redis.delete(self.keys.rebuild_journal)
            with contextlib.suppress(LockNotOwnedError):  # the lease ran out meanwhile
                await lock.release()

    async def find_drift(self, users: Iterable[UserScore]) -> str | None:
        """Compare the cache with committed scores; say how it differs, or None. A cached
        version newer than the snapshot is not drift: that change committed after it."""
        expected = list({user.user_id: user for user in users}.values())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hlen(self.keys.users)
            pipe.zcard(self.keys.board)
            pipe.zcard(self.keys.order)
            counts = [int(count) for count in await pipe.execute()]
        if len(set(counts)) != 1:
            return f"structures disagree: users, leaderboard, order hold {counts}"
        for start in range(0, len(expected), LOAD_BATCH):
            problem = await self._check(expected[start : start + LOAD_BATCH])
            if problem:
                return problem
        if counts[0] > len(expected):
            return f"{counts[0] - len(expected)} cached users are not in the database"
        return None

    async def _check(self, batch: Sequence[UserScore]) -> str | None:
        ids = [user.user_id for user in batch]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.users, ids)
            pipe.zmscore(self.keys.board, ids)
            raw_records, board_scores = await pipe.execute()
        members: list[str] = []
        for user, raw, board_score in zip(batch, raw_records, board_scores, strict=True):
            if raw is None:
                return f"user {user.user_id} is missing"
            record = _decode(raw)
            if record.version < user.version:
                return f"user {user.user_id} is at version {record.version}, not {user.version}"
            if record.version == user.version and record != cached(user):
                return f"user {user.user_id} differs from the database at the same version"
            if board_score != record.score:
                return f"user {user.user_id} scores {board_score} on the board, not {record.score}"
            members.append(record.order_member)
        order_scores = await self._redis.zmscore(self.keys.order, members)
        if None in order_scores:
            return f"{order_scores.count(None)} users are missing from the listing order"
        return None
