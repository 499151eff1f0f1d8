"""Every live connection of this process, and the coalesced broadcast of each board's top N.

Connections follow boards (``global`` unless they ask for others). A score change marks its
board dirty. The broadcast loop wakes at most once per ``broadcast_interval``, reads each
dirty board's top N once, and only when it differs from what was last sent gives it a new
``version``, encodes it once (text and whole WebSocket frame) and hands the same frame to
every follower: written straight to an idle follower's transport, else to its outbox
(latest wins there, per board; see ``LiveConnection.push_board``). The loop also notices a
board's period ending (by the clock, or an admin's rollover) and sends ``board_reset``
before the new, empty board.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import structlog

from scoreboard.boards.periods import Period
from scoreboard.errors import ScoreboardError
from scoreboard.leaderboard.schemas import LeaderboardEntry
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.connection import Frame, LiveConnection
from scoreboard.live.protocol import (
    MAX_BOARDS_PER_CONNECTION,
    BoardReset,
    CloseCode,
    ConnectionSuccess,
    ErrorEvent,
    LeaderboardUpdate,
    ScoreUpdate,
    encode,
    text_frame,
)
from scoreboard.metrics import Metrics
from scoreboard.records import BoardsChanged, ScoreEvent

log = structlog.get_logger("scoreboard.live")
FANOUT_CHUNK = 256
PERIOD_CHECK = 1.0  # seconds between looks at the clock for periods that ended


def _frame(text: str) -> Frame:
    return Frame(text, text_frame(text))


class TooManyConnectionsError(Exception):
    pass


class SubscriptionError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class BoardFeed:
    """One board as this process broadcasts it."""

    board: str
    period: Period
    version: int = 0
    entries: list[LeaderboardEntry] = field(default_factory=list)
    entries_json: bytes = b""
    followers: set[LiveConnection] = field(default_factory=set)

    def update(self, now: datetime) -> LeaderboardUpdate:
        return LeaderboardUpdate(
            self.board, self.period.key, self.period.end, self.version, self.entries, now
        )


class Hub:
    def __init__(
        self,
        leaderboard: LeaderboardService,
        *,
        top_n: int,
        interval: float,
        max_per_user: int,
        max_per_ip: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._leaderboard = leaderboard
        self._boards = leaderboard.boards
        self._top_n = top_n
        self._interval = interval
        self._max_per_user = max_per_user
        self._max_per_ip = max_per_ip
        self._connections: set[LiveConnection] = set()
        self._by_user: defaultdict[str, set[LiveConnection]] = defaultdict(set)
        self._per_ip: Counter[str] = Counter()
        self._feeds: dict[str, BoardFeed] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._broadcast_loop(), name="live-broadcast")

    async def stop(self) -> None:
        # A flag as well as a cancel: Python 3.11's wait_for (inside redis-py) can swallow a
        # cancellation, and the loop must still end.
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.close_all(CloseCode.GOING_AWAY, "server shutting down; reconnect")

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def feed(self, board: str) -> BoardFeed | None:
        return self._feeds.get(board)

    # -- connections -----------------------------------------------------------------------

    def register(self, connection: LiveConnection) -> None:
        user = connection.user_id
        if user is not None and len(self._by_user.get(user, ())) >= self._max_per_user:
            raise TooManyConnectionsError(f"at most {self._max_per_user} connections per user")
        if self._per_ip[connection.client_ip] >= self._max_per_ip:
            raise TooManyConnectionsError(f"at most {self._max_per_ip} connections per address")
        self._connections.add(connection)
        self._metrics.ws_connections.inc()
        self._per_ip[connection.client_ip] += 1
        if user is not None:
            self._by_user[user].add(connection)

    def unregister(self, connection: LiveConnection) -> None:
        if connection not in self._connections:
            return
        self.unsubscribe(connection, list(connection.boards))
        self._connections.discard(connection)
        self._metrics.ws_connections.dec()
        self._per_ip[connection.client_ip] -= 1
        if self._per_ip[connection.client_ip] <= 0:
            del self._per_ip[connection.client_ip]
        if connection.user_id is not None:
            mine = self._by_user[connection.user_id]
            mine.discard(connection)
            if not mine:
                del self._by_user[connection.user_id]

    async def subscribe(self, connection: LiveConnection, boards: Iterable[str]) -> list[BoardFeed]:
        """Follow these boards (in order, without repeats); returns the feeds newly followed.
        Raises SubscriptionError, following none of them, for an unknown or retired board
        or one board too many."""
        wanted = [b for b in dict.fromkeys(boards) if b not in connection.boards]
        if len(connection.boards) + len(wanted) > MAX_BOARDS_PER_CONNECTION:
            raise SubscriptionError(
                "too_many_boards",
                f"a connection follows at most {MAX_BOARDS_PER_CONNECTION} boards; "
                "unsubscribe from some first",
            )
        for board in wanted:
            try:
                entry = self._boards.entry(board)
            except ScoreboardError:
                raise SubscriptionError("unknown_board", f"there is no board '{board}'") from None
            if not entry.active:
                raise SubscriptionError("unknown_board", f"board '{board}' is retired")
        feeds: list[BoardFeed] = []
        for board in wanted:
            feed = self._feeds.get(board)
            if feed is None:
                feed = BoardFeed(board, self._boards.current(self._boards.entry(board)))
                await self._refresh(feed)
                # Checked again: another subscriber may have made it while we waited.
                feed = self._feeds.setdefault(board, feed)
            feed.followers.add(connection)
            connection.boards.add(board)
            feeds.append(feed)
        return feeds

    def unsubscribe(self, connection: LiveConnection, boards: Iterable[str]) -> None:
        for board in boards:
            connection.forget(board)
            feed = self._feeds.get(board)
            if feed is None:
                continue
            feed.followers.discard(connection)
            if not feed.followers:
                del self._feeds[board]
                self._dirty.discard(board)

    def welcome(self, connection: LiveConnection, feed: BoardFeed) -> str:
        return encode(
            ConnectionSuccess(
                connection.id,
                connection.user_id,
                feed.board,
                feed.period.key,
                feed.period.end,
                feed.version,
                feed.entries,
            )
        )

    def snapshot(self, connection: LiveConnection, feed: BoardFeed) -> None:
        connection.offer_board(feed.board, encode(feed.update(self._boards.clock())))

    def resync(self, connection: LiveConnection) -> None:
        for board in connection.boards:
            feed = self._feeds.get(board)
            if feed is not None:
                self.snapshot(connection, feed)

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(c.close(code, reason) for c in list(self._connections)))

    # -- events ----------------------------------------------------------------------------

    async def on_event(self, event: ScoreEvent | BoardsChanged) -> None:
        if isinstance(event, BoardsChanged):
            self._dirty.update(self._feeds)  # a period may have ended, a board retired
        else:
            self._on_score(event)
        self._wake.set()

    def _on_score(self, event: ScoreEvent) -> None:
        """The user's own sockets now, the board soon."""
        connections = self._by_user.get(event.user_id)
        if connections:
            frame = encode(
                ScoreUpdate(event.board, event.period, event.user_id, event.new_score, event.rank)
            )
            for connection in connections:
                if event.board in connection.boards:
                    connection.offer_personal(event.board, frame)
        if event.board in self._feeds:
            self._dirty.add(event.board)

    # -- broadcasting ----------------------------------------------------------------------

    async def _refresh(self, feed: BoardFeed) -> BoardReset | bool | None:
        """Bring a feed up to date. Returns a reset when a new period began, True when the
        board changed, None when the board is gone (retired or undefined)."""
        try:
            entry = self._boards.entry(feed.board)
        except ScoreboardError:
            return None
        if not entry.active:
            return None
        period = self._boards.current(entry)
        reset = None
        if period.key != feed.period.key:
            reset = BoardReset(feed.board, period.key, feed.period.key)
            feed.period = period
        key = entry.key(period)
        revision = await self._leaderboard.revision(key)
        entries = await self._leaderboard.top_entries(key, self._top_n)
        entries_json = msgspec.json.encode(entries)
        if reset is None and entries_json == feed.entries_json:
            return False
        feed.version = max(feed.version + 1, revision)
        feed.entries, feed.entries_json = entries, entries_json
        return reset or True

    def _due(self) -> set[str]:
        """Dirty boards, and boards whose period ended by the clock."""
        now = self._boards.clock()
        ended = {b for b, feed in self._feeds.items() if feed.period.end and now >= feed.period.end}
        due, self._dirty = self._dirty | ended, set()
        return due & set(self._feeds)

    async def _broadcast(self, board: str) -> None:
        feed = self._feeds.get(board)
        if feed is None:  # its last follower left while an earlier board was broadcast
            return
        began = time.perf_counter()
        outcome = await self._refresh(feed)
        if outcome is None:
            await self._drop(feed)
            return
        if outcome is False:
            return
        reset = _frame(encode(outcome)) if isinstance(outcome, BoardReset) else None
        frame = _frame(encode(feed.update(self._boards.clock())))
        followers = list(feed.followers)
        for index, connection in enumerate(followers, 1):
            connection.push_board(board, frame, reset)
            if index % FANOUT_CHUNK == 0:  # let score updates run in between
                await asyncio.sleep(0)
        self._metrics.broadcast_frames.inc(len(followers))
        self._metrics.broadcast_duration.observe(time.perf_counter() - began)

    async def _drop(self, feed: BoardFeed) -> None:
        """The board was retired: tell its followers and stop following it."""
        frame = encode(ErrorEvent("board_retired", f"board '{feed.board}' was retired"))
        for connection in list(feed.followers):
            connection.offer_control(frame)
            self.unsubscribe(connection, [feed.board])

    async def _broadcast_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PERIOD_CHECK):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            due = self._due()
            if not due:
                continue
            for board in due:
                try:
                    await self._broadcast(board)
                except Exception:
                    log.exception("live_broadcast_failed", board=board)
            await asyncio.sleep(self._interval)
