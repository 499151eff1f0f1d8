"""The production ranking: a Redis cache of the committed scores, shared by every instance.

Each board period has its own keys, all sharing the hash tag ``{<board>/<period>}`` so each
script touches one cluster slot and different boards can live on different nodes:

- ``leaderboard`` ZSET user id -> score, the spec's ``ZADD leaderboard {score} {user_id}``;
  a rank is ``1 +`` the users with a strictly better score (a ZCOUNT).
- ``order`` ZSET of members all at score 0 whose bytes sort in listing order, so a page and
  a user's neighbours are one ZRANGE by index.
- ``users`` HASH user id -> record (version, score, time, order member, username).
- ``revision`` grows with every effective change.

Every write and every listing is one Lua script (``redis_scripts``), hence atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, ResponseError

from scoreboard.leaderboard import redis_scripts as scripts
from scoreboard.leaderboard.ranking import (
    Applied,
    Listed,
    Neighbourhood,
    RankedEntry,
    clock_revision,
    ranked,
)
from scoreboard.records import BoardPeriod, Order, UserScore

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


def cached(user: UserScore, order: Order = Order.DESC) -> CachedUser:
    if not 0 <= user.score < scripts.SCORE_CEILING:
        raise ValueError(f"score {user.score} is outside [0, 2**53) and cannot be ranked")
    at = user.last_updated
    micros = ((at if at.tzinfo else at.replace(tzinfo=UTC)) - EPOCH) // MICROSECOND
    if micros < 0:
        raise ValueError(f"last_updated {at} is before 1970")
    sortable = scripts.SCORE_CEILING - user.score if order is Order.DESC else user.score
    member = f"{sortable:0{scripts.SCORE_WIDTH}d}|{micros:0{scripts.TIME_WIDTH}d}|{user.user_id}"
    return CachedUser(user.version, user.score, micros, member, user.username)


def _text(value: bytes | str) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


class RankingKeys:
    """The keys of one board period, all in one hash slot."""

    def __init__(self, prefix: str, key: BoardPeriod) -> None:
        self.stem = f"{prefix}board:{{{key.board}/{key.period}}}:"
        self.board = f"{self.stem}leaderboard"
        self.order = f"{self.stem}order"
        self.users = f"{self.stem}users"
        self.structures = [self.board, self.order, self.users]
        self.revision = f"{self.stem}revision"
        self.rebuild_lock = f"{self.stem}rebuild-lock"
        self.rebuild_journal = f"{self.stem}rebuild-journal"
        self.all = [*self.structures, self.revision, self.rebuild_journal]

    def loading(self, token: str) -> tuple[str, str, str]:
        """Where a rebuild loads its snapshot before swapping it in."""
        stem = f"{self.stem}rebuild:{token}:"
        return f"{stem}leaderboard", f"{stem}order", f"{stem}users"


class RedisRanking:
    """A ``Ranking`` in Redis, equal in every result to ``MemoryRanking``."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._apply = redis.register_script(scripts.APPLY)
        self._swap = redis.register_script(scripts.SWAP)
        self._window = redis.register_script(scripts.WINDOW)
        self._ranks = redis.register_script(scripts.RANKS)
        self._held_locks: dict[BoardPeriod, Lock] = {}

    def keys(self, key: BoardPeriod) -> RankingKeys:
        return RankingKeys(self._prefix, key)

    async def revision(self, key: BoardPeriod) -> int:
        stored = await self._redis.get(self.keys(key).revision)
        # A period nobody has scored in yet: the clock, which its first change will pass.
        return int(stored) if stored is not None else clock_revision()

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        """One script per board period, all in one round trip."""
        if not changes:
            return []
        grouped: dict[BoardPeriod, list[int]] = defaultdict(list)
        for index, (key, _) in enumerate(changes):
            grouped[key].append(index)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, indexes in grouped.items():
                keys = self.keys(key)
                args: list[str | int | bytes] = [key.order.value]
                for index in indexes:
                    user = changes[index][1]
                    record = cached(user, key.order)
                    args += [
                        user.user_id,
                        user.version,
                        user.score,
                        record.order_member,
                        _encode(record),
                    ]
                await self._apply(
                    keys=[*keys.structures, keys.revision, keys.rebuild_lock, keys.rebuild_journal],
                    args=args,
                    client=pipe,
                )
            replies = await pipe.execute()
        standings: list[RankedEntry | None] = [None] * len(changes)
        for indexes, reply in zip(grouped.values(), replies, strict=True):
            for n, index in enumerate(indexes):
                raw, rank = reply[2 * n], reply[2 * n + 1]
                record = _decode(raw)
                standings[index] = RankedEntry(
                    changes[index][1].user_id, record.username, record.score, int(rank)
                )
        return standings

    async def _listing(
        self, key: BoardPeriod, user_id: str, size: int, offset: int = 0
    ) -> list[RankedEntry] | None:
        """A window of the listing (the script counts the users better than its first)."""
        reply: Any = await self._window(
            keys=self.keys(key).structures, args=[key.order.value, user_id, size, offset]
        )
        if reply is None:
            return None
        start, first_rank, ids, records = reply
        rows: list[Listed] = []
        for user, raw in zip(ids, records, strict=True):
            if raw is None:
                raise ResponseError("ranking cache inconsistent: no record for a listed user")
            record = _decode(raw)
            rows.append((_text(user), record.username, record.score))
        return ranked(rows, int(start), int(first_rank))

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]:
        if limit <= 0:
            return []
        return await self._listing(key, "", limit, offset) or []

    async def total(self, key: BoardPeriod) -> int:
        return int(await self._redis.zcard(self.keys(key).board))

    async def rank_of(self, key: BoardPeriod, user_id: str) -> RankedEntry | None:
        entries = await self._listing(key, user_id, 0)
        return entries[0] if entries else None

    async def ranks_of(self, key: BoardPeriod, user_ids: Sequence[str]) -> list[RankedEntry]:
        if not user_ids:
            return []
        keys = self.keys(key)
        reply: Any = await self._ranks(
            keys=[keys.board, keys.users], args=[key.order.value, *dict.fromkeys(user_ids)]
        )
        found: list[tuple[str, RankedEntry]] = []
        for index in range(0, len(reply), 3):
            record = _decode(reply[index + 1])
            user_id = _text(reply[index])
            entry = RankedEntry(user_id, record.username, record.score, int(reply[index + 2]))
            found.append((record.order_member, entry))
        return [entry for _, entry in sorted(found, key=lambda pair: pair[0])]

    async def around(self, key: BoardPeriod, user_id: str, span: int) -> Neighbourhood | None:
        entries = await self._listing(key, user_id, max(0, span))
        if not entries:
            return None
        position = next(i for i, entry in enumerate(entries) if entry.user_id == user_id)
        return Neighbourhood(entries[position], entries[:position], entries[position + 1 :])

    async def drop(self, key: BoardPeriod) -> None:
        await self._redis.unlink(*self.keys(key).all)

    async def replace_all(self, key: BoardPeriod, users: Iterable[UserScore]) -> None:
        """Load a snapshot into fresh keys in pipelined batches, then swap it in atomically:
        readers see the old board until the swap, never a half-built one. Changes applied
        while ``rebuild_lock`` is held are journaled and win over an older snapshot."""
        latest = list({user.user_id: user for user in users}.values())  # last wins, as in memory
        keys = self.keys(key)
        loading = keys.loading(uuid.uuid4().hex)
        swapped = False
        # Two batches in flight: Python packs the next one while Redis inserts this one.
        in_flight = asyncio.Semaphore(2)

        async def load(batch: Sequence[UserScore]) -> None:
            async with in_flight:
                await self._load(loading, key.order, batch)
                held = self._held_locks.get(key)
                if held is not None:  # a long rebuild keeps its lock
                    await held.reacquire()

        try:
            async with asyncio.TaskGroup() as loads:
                for start in range(0, len(latest), LOAD_BATCH):
                    loads.create_task(load(latest[start : start + LOAD_BATCH]))
            await self._swap(keys=[*keys.structures, keys.revision, *loading, keys.rebuild_journal])
            swapped = True
        except ExceptionGroup as failed:  # raise what went wrong, not the group around it
            raise failed.exceptions[0] from None
        finally:
            if not swapped:
                await self._redis.delete(*loading)

    async def _load(
        self, loading: tuple[str, str, str], order: Order, batch: Sequence[UserScore]
    ) -> None:
        board, listing, users = loading
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(batch), COMMAND_SIZE):
                chunk = batch[start : start + COMMAND_SIZE]
                records = [cached(user, order) for user in chunk]
                pipe.zadd(board, {user.user_id: user.score for user in chunk})
                pipe.zadd(listing, dict.fromkeys((record.order_member for record in records), 0))
                pipe.hset(
                    users,
                    mapping={u.user_id: _encode(r) for u, r in zip(chunk, records, strict=True)},
                )
            for name in loading:
                pipe.pexpire(name, LOADING_TTL_MS)
            await pipe.execute()

    @asynccontextmanager
    async def rebuild_lock(
        self, key: BoardPeriod, lease_seconds: float = 120.0
    ) -> AsyncIterator[bool]:
        """Yield whether this caller may rebuild the board period: at most one holder across
        all instances. Take it *before* reading the snapshot from the database: from then on
        every applied change is journaled, so a change committed after the snapshot survives
        the swap."""
        keys = self.keys(key)
        lock = self._redis.lock(keys.rebuild_lock, timeout=lease_seconds, blocking=False)
        if not await lock.acquire():
            yield False
            return
        await self._redis.delete(keys.rebuild_journal)  # left by a holder that died
        self._held_locks[key] = lock
        try:
            yield True
        finally:
            self._held_locks.pop(key, None)
            if await lock.owned():  # past its lease the journal may be the next holder's
                await self._redis.delete(keys.rebuild_journal)
            with contextlib.suppress(LockNotOwnedError):  # the lease ran out meanwhile
                await lock.release()

    async def find_drift(self, key: BoardPeriod, users: Iterable[UserScore]) -> str | None:
        """Compare the cache with committed scores; say how it differs, or None. A cached
        version newer than the snapshot is not drift: that change committed after it."""
        expected = list({user.user_id: user for user in users}.values())
        keys = self.keys(key)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hlen(keys.users)
            pipe.zcard(keys.board)
            pipe.zcard(keys.order)
            counts = [int(count) for count in await pipe.execute()]
        if len(set(counts)) != 1:
            return f"structures disagree: users, leaderboard, order hold {counts}"
        for start in range(0, len(expected), LOAD_BATCH):
            problem = await self._check(key, expected[start : start + LOAD_BATCH])
            if problem:
                return problem
        if counts[0] > len(expected):
            return f"{counts[0] - len(expected)} cached users are not in the database"
        return None

    async def _check(self, key: BoardPeriod, batch: Sequence[UserScore]) -> str | None:
        keys = self.keys(key)
        ids = [user.user_id for user in batch]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.users, ids)
            pipe.zmscore(keys.board, ids)
            raw_records, board_scores = await pipe.execute()
        members: list[str] = []
        for user, raw, board_score in zip(batch, raw_records, board_scores, strict=True):
            if raw is None:
                return f"user {user.user_id} is missing"
            record = _decode(raw)
            if record.version < user.version:
                return f"user {user.user_id} is at version {record.version}, not {user.version}"
            if record.version == user.version and record != cached(user, key.order):
                return f"user {user.user_id} differs from the database at the same version"
            if board_score != record.score:
                return f"user {user.user_id} scores {board_score} on the board, not {record.score}"
            members.append(record.order_member)
        order_scores = await self._redis.zmscore(keys.order, members)
        if None in order_scores:
            return f"{order_scores.count(None)} users are missing from the listing order"
        return None
