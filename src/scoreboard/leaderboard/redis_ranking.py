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
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, NoScriptError, ResponseError

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
from scoreboard.redis_urls import RedisClient
from scoreboard.redis_wire import HotScript, wire_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
LOAD_BATCH = 300  # users per command: a few ms of Python, and Redis serves others between
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


class Seen(msgspec.Struct, frozen=True):
    """One user as a check found them in the cache."""

    stored: bool  # the users hash has an entry (``record`` is None if it is unreadable)
    record: CachedUser | None
    board_score: float | None
    listed: bool  # the record's order member is in the listing order


class Inspection(msgspec.Struct, frozen=True):
    counts: tuple[int, int, int]  # users hash, board, listing order
    complete: bool  # the period was loaded or checked in full since its keys were made
    users: dict[str, Seen]


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
        self.check_lock = f"{self.stem}check-lock"
        self.complete = f"{self.stem}complete"
        self.all = [*self.structures, self.revision, self.rebuild_journal, self.complete]

    def loading(self, token: str) -> tuple[str, str, str]:
        """Where a rebuild loads its snapshot before swapping it in."""
        stem = f"{self.stem}rebuild:{token}:"
        return f"{stem}leaderboard", f"{stem}order", f"{stem}users"


class RedisRanking:
    """A ``Ranking`` in Redis, equal in every result to ``MemoryRanking``."""

    def __init__(self, redis: RedisClient, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        # The hot path's scripts on the wire (one server); a rebuild's and a check's, which
        # may run long, on pooled connections of their own.
        self._apply = HotScript(redis, scripts.APPLY)
        self._swap = redis.register_script(scripts.SWAP)
        self._window = HotScript(redis, scripts.WINDOW)
        self._ranks = HotScript(redis, scripts.RANKS)
        self._inspect = redis.register_script(scripts.INSPECT)
        self._repair = redis.register_script(scripts.REPAIR)
        self._held_locks: dict[BoardPeriod, Lock] = {}
        self._check_locks: dict[BoardPeriod, Lock] = {}

    def keys(self, key: BoardPeriod) -> RankingKeys:
        return RankingKeys(self._prefix, key)

    async def revision(self, key: BoardPeriod) -> int:
        stored = await self._one("GET", self.keys(key).revision)
        # A period nobody has scored in yet: the clock, which its first change will pass.
        return int(stored) if stored is not None else clock_revision()

    async def apply(self, changes: Applied) -> list[RankedEntry | None]:
        """One script per board period: on one server all in one round trip, on a cluster
        one concurrent call per period (each goes to its own slot's master)."""
        if not changes:
            return []
        grouped: dict[BoardPeriod, list[int]] = defaultdict(list)
        for index, (key, _) in enumerate(changes):
            grouped[key].append(index)
        calls: list[tuple[list[str], list[str | int | bytes]]] = []
        for key, indexes in grouped.items():
            keys = self.keys(key)
            args: list[str | int | bytes] = [key.order.value]
            for index in indexes:
                user = changes[index][1]
                record = cached(user, key.order)
                args += [user.user_id, user.version, user.score, record.order_member]
                args.append(_encode(record))
            names = [*keys.structures, keys.revision, keys.rebuild_lock, keys.rebuild_journal]
            calls.append((names, args))
        replies: list[Any]
        if isinstance(self._redis, RedisCluster):
            # A cluster pipeline does not load missing scripts (a promoted replica has none).
            replies = await asyncio.gather(*(self._apply(keys=k, args=a) for k, a in calls))
        elif len(calls) == 1:
            replies = [await self._apply(keys=calls[0][0], args=calls[0][1])]
        else:
            # EVALSHA straight into one round trip (no redis-py Script in a pipeline: it would
            # cost a SCRIPT EXISTS round trip on every execute). A server without the script
            # (restarted, failed over) refuses those calls unrun: each is sent again, loading it.
            commands = [["EVALSHA", self._apply.sha, len(n), *n, *a] for n, a in calls]
            if (wire := wire_of(self._redis)) is not None:
                replies = await wire.call_many(commands)
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
            for i, reply in enumerate(replies):
                if isinstance(reply, NoScriptError):
                    replies[i] = await self._apply(keys=calls[i][0], args=calls[i][1])
                elif isinstance(reply, Exception):
                    raise reply
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
        return int(await self._one("ZCARD", self.keys(key).board))

    async def rank_for(self, key: BoardPeriod, score: int) -> int:
        board = self.keys(key).board
        if key.order is Order.DESC:
            better = await self._one("ZCOUNT", board, f"({score}", "+inf")
        else:
            better = await self._one("ZCOUNT", board, "-inf", f"({score}")
        return 1 + int(better)

    async def _one(self, *command: str) -> Any:
        """A one-key read of the hot paths: on the wire when there is one (the reply as
        redis-py gives it for these commands: bytes, an integer or None)."""
        if (wire := wire_of(self._redis)) is not None:
            return await wire.call(*command)
        return await self._redis.execute_command(*command)

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
        latest = list({user.user_id: user for user in users}.values())  # last wins, as in memory

        async def chunks() -> AsyncIterator[Sequence[UserScore]]:
            for start in range(0, len(latest), LOAD_BATCH):
                yield latest[start : start + LOAD_BATCH]

        await self.load(key, chunks())

    async def load(self, key: BoardPeriod, chunks: AsyncIterator[Sequence[UserScore]]) -> int:
        """Load a snapshot (each user once) into fresh keys in pipelined chunks, then swap it
        in atomically: readers see the old board until the swap, never a half-built one.
        Changes applied while ``rebuild_lock`` is held are journaled and win over an older
        snapshot. The event loop gets control back after every chunk. Returns the users
        loaded."""
        keys = self.keys(key)
        loading = keys.loading(uuid.uuid4().hex)
        swapped = False
        loaded = 0
        pending: asyncio.Task[None] | None = None  # one chunk in Redis while the next is packed
        try:
            async for chunk in chunks:
                loaded += len(chunk)
                packed = self._pack(loading, key.order, chunk)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._send(key, packed))
            if pending is not None:
                await pending
                pending = None
            await self._swap(
                keys=[
                    *keys.structures,
                    keys.revision,
                    *loading,
                    keys.rebuild_journal,
                    keys.complete,
                ]
            )
            swapped = True
            return loaded
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            if not swapped:
                await self._redis.delete(*loading)

    def _pack(
        self, loading: tuple[str, str, str], order: Order, chunk: Sequence[UserScore]
    ) -> list[tuple[str, Any]]:
        board, listing, users = loading
        records = [cached(user, order) for user in chunk]
        return [
            ("zadd", (board, {user.user_id: user.score for user in chunk})),
            ("zadd", (listing, dict.fromkeys((record.order_member for record in records), 0))),
            (
                "hset",
                (users, {u.user_id: _encode(r) for u, r in zip(chunk, records, strict=True)}),
            ),
            *(("pexpire", (name, LOADING_TTL_MS)) for name in loading),
        ]

    async def _send(self, key: BoardPeriod, packed: list[tuple[str, Any]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command, (name, payload) in packed:
                if command == "zadd":
                    pipe.zadd(name, payload)
                elif command == "hset":
                    pipe.hset(name, mapping=payload)
                else:
                    pipe.pexpire(name, payload)
            await pipe.execute()
        for held in (self._held_locks.get(key), self._check_locks.get(key)):
            if held is not None:  # a long rebuild keeps its locks
                await held.reacquire()

    @asynccontextmanager
    async def _lease(
        self, name: str, key: BoardPeriod, held: dict[BoardPeriod, Lock], seconds: float
    ) -> AsyncIterator[Lock | None]:
        """A Redis lock with a lease, or None when another caller holds it; kept in ``held``
        while held, so long work can renew it."""
        lock = self._redis.lock(name, timeout=seconds, blocking=False)
        if not await lock.acquire():
            yield None
            return
        held[key] = lock
        try:
            yield lock
        finally:
            held.pop(key, None)
            with contextlib.suppress(LockNotOwnedError):  # the lease ran out meanwhile
                await lock.release()

    @asynccontextmanager
    async def rebuild_lock(
        self, key: BoardPeriod, lease_seconds: float = 120.0
    ) -> AsyncIterator[bool]:
        """Yield whether this caller may rebuild the board period: at most one holder across
        all instances. Take it *before* reading the snapshot from the database: from then on
        every applied change is journaled, so a change committed after the snapshot survives
        the swap."""
        keys = self.keys(key)
        async with self._lease(keys.rebuild_lock, key, self._held_locks, lease_seconds) as lock:
            if lock is None:
                yield False
                return
            await self._redis.delete(keys.rebuild_journal)  # left by a holder that died
            try:
                yield True
            finally:
                if await lock.owned():  # past its lease the journal may be the next holder's
                    await self._redis.delete(keys.rebuild_journal)

    @asynccontextmanager
    async def check_lock(
        self, key: BoardPeriod, lease_seconds: float = 60.0
    ) -> AsyncIterator[bool]:
        """Yield whether this caller may check the board period now: one checker at a time
        across all instances. The lease is renewed with ``renew_check``."""
        name = self.keys(key).check_lock
        async with self._lease(name, key, self._check_locks, lease_seconds) as lock:
            yield lock is not None

    async def renew_check(self, key: BoardPeriod) -> None:
        lock = self._check_locks.get(key)
        if lock is not None:
            await lock.reacquire()

    async def server_id(self) -> str:
        """The Redis server's run id: it changes when the server restarts or a replica takes
        over, the two ways a cache loses what it held without any key going missing."""
        try:
            if isinstance(self._redis, RedisCluster):  # every master's: any one may fail over
                by_node: dict[str, Any] = await self._redis.info(
                    "server", target_nodes=RedisCluster.PRIMARIES
                )
                if "run_id" in by_node:  # a cluster of one master answers as a server
                    return str(by_node["run_id"])
                return ",".join(sorted(str(info.get("run_id", "")) for info in by_node.values()))
            info: dict[str, Any] = await self._redis.info("server")
        except ResponseError:  # INFO refused (a proxy, an ACL): no failover detection
            return ""
        return str(info.get("run_id", ""))

    async def inspect(self, key: BoardPeriod, user_ids: Sequence[str]) -> Inspection:
        """One atomic look at the period's structures and these users."""
        keys = self.keys(key)
        reply: Any = await self._inspect(
            keys=[*keys.structures, keys.complete], args=list(user_ids)
        )
        users: dict[str, Seen] = {}
        for n, user_id in enumerate(user_ids):
            raw, score, listed = reply[4 + 3 * n : 7 + 3 * n]
            record: CachedUser | None = None
            if raw is not None:
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    record = _decode(raw)
            users[user_id] = Seen(
                stored=raw is not None,
                record=record,
                board_score=None if score is None else float(score),
                listed=bool(listed),
            )
        counts = (int(reply[0]), int(reply[1]), int(reply[2]))
        return Inspection(counts, bool(reply[3]), users)

    async def repair(
        self,
        key: BoardPeriod,
        users: Sequence[UserScore],
        drops: Sequence[tuple[str, int]] = (),
        replaces: Sequence[tuple[UserScore, int]] = (),
    ) -> int:
        """Put these users' committed state back (unless a newer one arrived meanwhile);
        drop users the database does not have, and replace users the cache holds at a version
        the database never reached, each only if still at the version seen. Returns how many
        changed."""
        args: list[str | int | bytes] = []
        for mode, user, version in (
            *(("put", user, user.version) for user in users),
            *(("replace", user, seen) for user, seen in replaces),
        ):
            record = cached(user, key.order)
            args += [user.user_id, mode, version, user.score, record.order_member, _encode(record)]
        for user_id, version in drops:
            args += [user_id, "drop", version, 0, "", ""]
        if not args:
            return 0
        keys = self.keys(key)
        return int(
            await self._repair(
                keys=[*keys.structures, keys.revision, keys.rebuild_lock, keys.rebuild_journal],
                args=args,
            )
        )

    async def mark_complete(self, key: BoardPeriod) -> None:
        await self._redis.set(self.keys(key).complete, "1")

    async def scan_users(self, key: BoardPeriod, cursor: int, count: int) -> tuple[int, list[str]]:
        """The next few user ids of the cached hash (HSCAN): 0 as the cursor when done."""
        next_cursor, found = await self._redis.hscan(self.keys(key).users, cursor, count=count)
        return int(next_cursor), [_text(user_id) for user_id in found]
