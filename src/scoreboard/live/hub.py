"""Every live connection of this process, and the coalesced broadcast of the top N.

A score change marks the board dirty. The broadcast loop wakes at most once per
``broadcast_interval``, reads the top N once, and only when it differs from what was last
sent gives it a new ``version``, encodes it once and offers the same frame to every
connection (latest wins in each outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from datetime import UTC, datetime

import msgspec
import structlog

from scoreboard.leaderboard.schemas import LeaderboardEntry
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.broadcaster import ScoreEvent
from scoreboard.live.connection import LiveConnection
from scoreboard.live.protocol import CloseCode, LeaderboardUpdate, ScoreUpdate, encode

log = structlog.get_logger("scoreboard.live")
FANOUT_CHUNK = 256


class TooManyConnectionsError(Exception):
    pass


class Hub:
    def __init__(
        self,
        leaderboard: LeaderboardService,
        *,
        top_n: int,
        interval: float,
        max_per_user: int,
        max_per_ip: int,
    ) -> None:
        self._leaderboard = leaderboard
        self._top_n = top_n
        self._interval = interval
        self._max_per_user = max_per_user
        self._max_per_ip = max_per_ip
        self._connections: set[LiveConnection] = set()
        self._by_user: defaultdict[str, set[LiveConnection]] = defaultdict(set)
        self._per_ip: Counter[str] = Counter()
        self._dirty = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.version = 0
        self.entries: list[LeaderboardEntry] = []
        self._entries_json = b""

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.create_task(self._broadcast_loop(), name="live-broadcast")

    async def stop(self) -> None:
        # A flag as well as a cancel: Python 3.11's wait_for (inside redis-py) can swallow a
        # cancellation, and the loop must still end.
        self._stopping = True
        self._dirty.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.close_all(CloseCode.GOING_AWAY, "server shutting down; reconnect")

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def register(self, connection: LiveConnection) -> None:
        user = connection.user_id
        if user is not None and len(self._by_user.get(user, ())) >= self._max_per_user:
            raise TooManyConnectionsError(f"at most {self._max_per_user} connections per user")
        if self._per_ip[connection.client_ip] >= self._max_per_ip:
            raise TooManyConnectionsError(f"at most {self._max_per_ip} connections per address")
        self._connections.add(connection)
        self._per_ip[connection.client_ip] += 1
        if user is not None:
            self._by_user[user].add(connection)

    def unregister(self, connection: LiveConnection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        self._per_ip[connection.client_ip] -= 1
        if self._per_ip[connection.client_ip] <= 0:
            del self._per_ip[connection.client_ip]
        if connection.user_id is not None:
            mine = self._by_user[connection.user_id]
            mine.discard(connection)
            if not mine:
                del self._by_user[connection.user_id]

    async def on_score(self, event: ScoreEvent) -> None:
        """A committed score change: tell the user's own sockets now, the board soon."""
        connections = self._by_user.get(event.user_id)
        if connections:
            frame = encode(ScoreUpdate(event.user_id, event.new_score, event.rank))
            for connection in connections:
                connection.offer_personal(frame)
        self._dirty.set()

    def snapshot_frame(self) -> str:
        return encode(self._update())

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(c.close(code, reason) for c in list(self._connections)))

    def _update(self) -> LeaderboardUpdate:
        return LeaderboardUpdate(self.version, self.entries, datetime.now(UTC))

    async def _refresh(self) -> bool:
        # The ranking's revision is shared by every instance (Redis) or starts from the clock
        # (in-process), so versions agree across instances and keep growing across restarts.
        revision = await self._leaderboard.revision()
        entries = await self._leaderboard.top_entries(self._top_n)
        entries_json = msgspec.json.encode(entries)
        if entries_json == self._entries_json:
            return False
        self.version = max(self.version + 1, revision)
        self.entries, self._entries_json = entries, entries_json
        return True

    async def _broadcast_loop(self) -> None:
        while not self._stopping:
            await self._dirty.wait()
            self._dirty.clear()
            if self._stopping:
                return
            try:
                if await self._refresh():
                    frame = encode(self._update())
                    for index, connection in enumerate(list(self._connections), 1):
                        connection.offer_board(frame)
                        if index % FANOUT_CHUNK == 0:  # let score updates run in between
                            await asyncio.sleep(0)
            except Exception:
                log.exception("live_broadcast_failed")
            await asyncio.sleep(self._interval)
