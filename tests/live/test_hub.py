"""The hub and connection outboxes with fake sockets (unit level)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from scoreboard.boards.repository import StoredBoard, StoredBoards
from scoreboard.boards.rules import DEFAULT_BOARD, Board
from scoreboard.boards.service import BoardRegistry
from scoreboard.leaderboard.ranking import MemoryRanking, RankedEntry
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.connection import LiveConnection
from scoreboard.live.hub import FANOUT_CHUNK, Hub, SubscriptionError, TooManyConnectionsError
from scoreboard.live.protocol import MAX_BOARDS_PER_CONNECTION
from scoreboard.records import GLOBAL, BoardPeriod, BoardsChanged, ScoreEvent, UserScore

DAY = Board(id="daily", reset="daily")
NIGHT = Board(id="nightly", reset="daily")  # starts its periods with DAY's
SPARE = [Board(id=f"extra{i}") for i in range(MAX_BOARDS_PER_CONNECTION)]
OLD = Board(id="old")


class StoredRows:
    """The database side of the registry: no runtime boards, only the retirements of catalog
    boards the test makes (``retire``, then ``registry.refresh()``)."""

    def __init__(self) -> None:
        self.stored = StoredBoards(1, {}, {})

    async def load_now(self) -> StoredBoards:
        return self.stored

    def retire(self, board_id: str, at: datetime) -> None:
        boards = {**self.stored.boards, board_id: StoredBoard(board_id, None, at, at)}
        self.stored = StoredBoards(self.stored.revision + 1, boards, {})


class CountingRanking(MemoryRanking):
    """Counts the reads of a board's top; with ``revision``, a revision that never moves."""

    def __init__(self, revision: int | None = None) -> None:
        super().__init__()
        self.top_reads = 0
        self._fixed = revision

    async def top(self, key: BoardPeriod, limit: int, offset: int = 0) -> list[RankedEntry]:
        self.top_reads += 1
        return await super().top(key, limit, offset)

    async def revision(self, key: BoardPeriod) -> int:
        return self._fixed if self._fixed is not None else await super().revision(key)


@dataclass(eq=False)
class CountedConnection(LiveConnection):
    """Adds one to ``offers`` (shared between connections) per board frame offered."""

    offers: list[str] = field(default_factory=list)

    def offer_board(self, board: str, frame: str) -> None:
        self.offers.append(board)
        super().offer_board(board, frame)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeSocket:
    def __init__(self, *, blocked: bool = False) -> None:
        self.scope: dict[str, Any] = {}
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.blocked = blocked

    async def send_text(self, text: str) -> None:
        if self.blocked:
            await asyncio.Event().wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def connect(
    hub: Hub,
    socket: FakeSocket,
    user: str,
    ip: str = "10.0.0.1",
    boards: tuple[str, ...] = (GLOBAL,),
) -> LiveConnection:
    connection = LiveConnection(
        socket=cast(Any, socket), user_id=user, client_ip=ip, expires_at=None, send_timeout=0.2
    )
    hub.register(connection)
    await hub.subscribe(connection, boards)
    return connection


async def score(
    ranking: MemoryRanking, hub: Hub, user: str, points: int, version: int, board: str = GLOBAL
) -> None:
    registry = hub._boards
    entry = registry.entry(board)
    key = entry.key(registry.current(entry))
    await ranking.apply([(key, UserScore(user, user, points, version, registry.clock()))])
    await hub.on_event(ScoreEvent(board, key.period, user, points, 1))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 2, 23, 59, 0, tzinfo=UTC))


async def start_hub(
    clock: Clock,
    boards: Sequence[Board] = (DAY,),
    *,
    ranking: MemoryRanking | None = None,
    rows: StoredRows | None = None,
    max_per_ip: int = 3,
) -> tuple[MemoryRanking, Hub]:
    """A started hub over ``global`` and ``boards``, on an in-memory ranking."""
    ranking = ranking or MemoryRanking()
    registry = BoardRegistry(
        {GLOBAL: DEFAULT_BOARD, **{board.id: board for board in boards}},
        {"t": (GLOBAL, *(board.id for board in boards))},
        cast(Any, rows or StoredRows()),
        clock,
    )
    await registry.start(refresh=False)
    hub = Hub(
        LeaderboardService(ranking, registry),
        top_n=3,
        interval=0.05,
        max_per_user=2,
        max_per_ip=max_per_ip,
    )
    await hub.start()
    return ranking, hub


@pytest.fixture
async def setup(clock: Clock) -> tuple[MemoryRanking, Hub]:
    return await start_hub(clock)


async def test_bursts_are_coalesced_and_a_blocked_client_is_closed_alone(
    setup: tuple[MemoryRanking, Hub],
) -> None:
    ranking, hub = setup
    fast, stuck = FakeSocket(), FakeSocket(blocked=True)
    reader = await connect(hub, fast, "fast")
    sloth = await connect(hub, stuck, "stuck")
    tasks = [asyncio.create_task(c.run_sender()) for c in (reader, sloth)]
    for version in range(1, 21):  # a burst of 20 changes inside one interval
        await score(ranking, hub, "p", version * 10, version)
    await asyncio.sleep(0.4)
    boards = [m for m in fast.sent if m["type"] == "leaderboard_update"]
    assert 1 <= len(boards) <= 3  # coalesced, not 20
    assert boards[-1]["leaderboard"][0]["score"] == 200  # and the latest wins
    assert stuck.closed == (1013, "too slow to keep up; reconnect")
    assert fast.closed is None
    await hub.stop()
    for task in tasks:
        task.cancel()


async def test_an_unchanged_top_is_not_broadcast(setup: tuple[MemoryRanking, Hub]) -> None:
    ranking, hub = setup
    socket = FakeSocket()
    connection = await connect(hub, socket, "watcher")
    sender = asyncio.create_task(connection.run_sender())
    for i in range(3):
        await score(ranking, hub, f"top{i}", 100, 1)
    await asyncio.sleep(0.2)
    feed = hub.feed(GLOBAL)
    assert feed is not None
    version = feed.version
    await score(ranking, hub, "low", 1, 1)  # below the top 3
    await asyncio.sleep(0.2)
    assert feed.version == version
    assert len([m for m in socket.sent if m["type"] == "leaderboard_update"]) == 1
    sender.cancel()
    await hub.stop()


async def test_limits_per_user_and_per_address(setup: tuple[MemoryRanking, Hub]) -> None:
    _, hub = setup
    await connect(hub, FakeSocket(), "u")
    await connect(hub, FakeSocket(), "u")
    with pytest.raises(TooManyConnectionsError, match="per user"):
        await connect(hub, FakeSocket(), "u")
    await connect(hub, FakeSocket(), "v")
    with pytest.raises(TooManyConnectionsError, match="per address"):
        await connect(hub, FakeSocket(), "w")
    await connect(hub, FakeSocket(), "w", ip="10.0.0.2")
    assert hub.connection_count == 4
    await hub.stop()


async def test_each_board_coalesces_on_its_own_and_latest_wins_per_board(
    setup: tuple[MemoryRanking, Hub],
) -> None:
    ranking, hub = setup
    socket = FakeSocket()
    connection = await connect(hub, socket, "p", boards=(GLOBAL, DAY.id))
    for version in range(1, 11):  # a burst on each board, before anything is sent
        await score(ranking, hub, "p", version, version)
        await score(ranking, hub, "p", version * 100, version, board=DAY.id)
    await asyncio.sleep(0.2)
    # Nothing was read yet: one pending frame per board, each the newest.
    assert len(connection._boards) == 2
    sender = asyncio.create_task(connection.run_sender())
    await asyncio.sleep(0.1)
    latest = {m["board"]: m for m in socket.sent if m["type"] == "leaderboard_update"}
    assert latest[GLOBAL]["leaderboard"][0]["score"] == 10
    assert latest[DAY.id]["leaderboard"][0]["score"] == 1000
    assert len([m for m in socket.sent if m["type"] == "leaderboard_update"]) == 2
    personal = [m for m in socket.sent if m["type"] == "score_update"]
    assert {(m["board"], m["newScore"]) for m in personal} == {(GLOBAL, 10), (DAY.id, 1000)}
    sender.cancel()
    await hub.stop()


async def test_a_period_boundary_sends_board_reset_then_the_empty_board(
    setup: tuple[MemoryRanking, Hub], clock: Clock
) -> None:
    ranking, hub = setup
    socket = FakeSocket()
    connection = await connect(hub, socket, "watcher", boards=(DAY.id,))
    sender = asyncio.create_task(connection.run_sender())
    await score(ranking, hub, "early", 50, 1, board=DAY.id)
    await asyncio.sleep(0.2)
    clock.now = clock.now + timedelta(minutes=2)  # past midnight: 2026-12-03 began
    await asyncio.sleep(1.5)  # the hub looks at the clock every second
    kinds = [(m["type"], m.get("period")) for m in socket.sent]
    reset = kinds.index(("board_reset", "2026-12-03"))
    assert socket.sent[reset]["previousPeriod"] == "2026-12-02"
    after = socket.sent[reset + 1]
    assert (after["type"], after["period"], after["leaderboard"]) == (
        "leaderboard_update",
        "2026-12-03",
        [],
    )
    before = [m for m in socket.sent[:reset] if m["type"] == "leaderboard_update"]
    assert after["version"] > before[-1]["version"]
    sender.cancel()
    await hub.stop()


async def test_subscriptions_are_bounded_and_unknown_boards_refused(
    setup: tuple[MemoryRanking, Hub],
) -> None:
    ranking, hub = setup
    socket = FakeSocket()
    connection = await connect(hub, socket, "u", boards=(GLOBAL,))
    with pytest.raises(SubscriptionError, match="no board 'nope'"):
        await hub.subscribe(connection, [DAY.id, "nope"])
    assert connection.boards == {GLOBAL}  # all or nothing
    hub.unsubscribe(connection, [GLOBAL])
    assert hub.feed(GLOBAL) is None  # nobody follows it any more
    await score(ranking, hub, "p", 5, 1)
    await asyncio.sleep(0.2)
    assert connection._boards == {}
    await hub.stop()


async def test_a_connection_follows_up_to_the_limit_and_each_refusal_says_why(
    clock: Clock,
) -> None:
    """Guards ``Hub.subscribe``'s checks and ``SubscriptionError.code``: a connection may
    follow exactly MAX_BOARDS_PER_CONNECTION boards (not one fewer, not without bound);
    the feeds newly followed come back in the order asked for; each refusal carries the
    code and message the client is sent (``too_many_boards``; ``unknown_board`` for an
    undefined or a retired board) and follows nothing of what it asked for."""
    rows = StoredRows()
    rows.retire(OLD.id, clock.now)
    _, hub = await start_hub(clock, [*SPARE, OLD], rows=rows)
    connection = await connect(hub, FakeSocket(), "u")  # follows global
    wanted = [board.id for board in SPARE[: MAX_BOARDS_PER_CONNECTION - 1]]
    feeds = await hub.subscribe(connection, [*wanted, GLOBAL, wanted[0]])  # repeats: once
    assert [feed.board for feed in feeds] == wanted
    assert len(connection.boards) == MAX_BOARDS_PER_CONNECTION
    with pytest.raises(SubscriptionError) as refused:
        await hub.subscribe(connection, [SPARE[-1].id])
    assert (refused.value.code, str(refused.value)) == (
        "too_many_boards",
        f"a connection follows at most {MAX_BOARDS_PER_CONNECTION} boards; "
        "unsubscribe from some first",
    )
    hub.unsubscribe(connection, wanted)
    for board, message in (
        ("nope", "there is no board 'nope'"),
        (OLD.id, "board 'old' is retired"),
    ):
        with pytest.raises(SubscriptionError) as refused:
            await hub.subscribe(connection, [SPARE[-1].id, board])
        assert (refused.value.code, str(refused.value)) == ("unknown_board", message)
        assert connection.boards == {GLOBAL}
    await hub.stop()


async def test_new_followers_of_a_followed_board_share_its_feed_without_reading_it(
    clock: Clock,
) -> None:
    """Guards ``Hub.subscribe``'s reuse of a live feed: later followers join the feed the
    first one made, and the board's top is not read again for them. If every subscriber
    read the ranking, a reconnect storm after a deploy would read each board once per
    client instead of once."""
    ranking = CountingRanking()
    _, hub = await start_hub(clock, ranking=ranking)
    first = await connect(hub, FakeSocket(), "a")
    feed = hub.feed(GLOBAL)
    assert feed is not None
    reads = ranking.top_reads
    for user in ("b", "c"):
        later = LiveConnection(cast(Any, FakeSocket()), user, "10.0.0.1", None, 0.2)
        hub.register(later)
        assert await hub.subscribe(later, [GLOBAL]) == [feed]
        assert later in feed.followers
    assert first in feed.followers
    assert ranking.top_reads == reads
    await hub.stop()


async def test_unsubscribing_leaves_every_board_named_and_the_board_can_be_followed_again(
    setup: tuple[MemoryRanking, Hub],
) -> None:
    """Guards ``Hub.unsubscribe``: every board named is left, also those named after one the
    connection does not follow; the connection forgets the board (its unsent snapshot is not
    sent, it no longer counts towards the limit) and may follow it again later."""
    _, hub = setup
    socket = FakeSocket()
    connection = await connect(hub, socket, "p", boards=(GLOBAL, DAY.id))
    for board in (GLOBAL, DAY.id):
        feed = hub.feed(board)
        assert feed is not None
        hub.snapshot(connection, feed)  # waiting to be sent
    hub.unsubscribe(connection, ["nope", GLOBAL])
    assert connection.boards == {DAY.id}
    assert hub.feed(GLOBAL) is None
    sender = asyncio.create_task(connection.run_sender())
    await asyncio.sleep(0.1)
    assert [m["board"] for m in socket.sent] == [DAY.id]
    assert [feed.board for feed in await hub.subscribe(connection, [GLOBAL])] == [GLOBAL]
    sender.cancel()
    await hub.stop()


async def test_boards_that_start_a_period_together_each_announce_it(clock: Clock) -> None:
    """Guards the reset and board frames of ``Hub._broadcast`` (and ``_refresh``,
    ``BoardFeed.update``): when two followed boards start a new period at once, a client
    that was not reading gets a ``board_reset`` naming each board (each kept under its own
    board in the outbox, neither overwriting the other), then each board's new frame with
    its period, when that period ends and when the frame was made."""
    _, hub = await start_hub(clock, [DAY, NIGHT])
    socket = FakeSocket()
    connection = await connect(hub, socket, "watcher", boards=(DAY.id, NIGHT.id))
    clock.now = clock.now + timedelta(minutes=2)  # past midnight: 2026-12-03 began on both
    await hub.on_event(BoardsChanged(2))  # rather than wait for the hub's look at the clock
    await asyncio.sleep(0.2)
    sender = asyncio.create_task(connection.run_sender())
    await asyncio.sleep(0.1)
    resets = [m for m in socket.sent if m["type"] == "board_reset"]
    assert len(resets) == 2
    assert {(m["board"], m["period"], m["previousPeriod"]) for m in resets} == {
        (DAY.id, "2026-12-03", "2026-12-02"),
        (NIGHT.id, "2026-12-03", "2026-12-02"),
    }
    updates = [m for m in socket.sent if m["type"] == "leaderboard_update"]
    assert sorted(m["board"] for m in updates) == [DAY.id, NIGHT.id]
    assert socket.sent.index(updates[0]) > socket.sent.index(resets[-1])  # resets first
    for update in updates:
        assert (update["period"], update["leaderboard"]) == ("2026-12-03", [])
        assert update["periodEnd"] is not None
        assert datetime.fromisoformat(update["periodEnd"]) == datetime(2026, 12, 4, tzinfo=UTC)
        assert update["updatedAt"] is not None
        assert datetime.fromisoformat(update["updatedAt"]) == clock.now
    sender.cancel()
    await hub.stop()


async def test_each_new_frame_has_a_higher_version_even_if_the_revision_stands_still(
    clock: Clock,
) -> None:
    """Guards ``Hub._refresh``'s version step: every changed board is sent with a version
    above the one sent before, even when the ranking's revision did not move. Clients keep
    the frame with the highest version: one that does not grow is dropped as old."""
    ranking = CountingRanking(revision=7)
    _, hub = await start_hub(clock, ranking=ranking)
    socket = FakeSocket()
    connection = await connect(hub, socket, "watcher")
    feed = hub.feed(GLOBAL)
    assert feed is not None
    versions = [feed.version]  # what the welcome frame said
    sender = asyncio.create_task(connection.run_sender())
    for points in (10, 20, 30):
        await score(ranking, hub, "p", points, points)
        await asyncio.sleep(0.15)
    versions += [m["version"] for m in socket.sent if m["type"] == "leaderboard_update"]
    assert len(versions) >= 2
    assert versions == sorted(set(versions))  # strictly growing
    sender.cancel()
    await hub.stop()


async def test_followers_of_a_retired_board_are_told_and_let_go(clock: Clock) -> None:
    """Guards ``Hub._broadcast``'s retired-board branch (``_drop``): when a followed board is
    retired, each follower gets a ``board_retired`` error and stops following it; its other
    boards are kept."""
    rows = StoredRows()
    _, hub = await start_hub(clock, rows=rows)
    socket = FakeSocket()
    connection = await connect(hub, socket, "p", boards=(GLOBAL, DAY.id))
    sender = asyncio.create_task(connection.run_sender())
    rows.retire(DAY.id, clock.now)
    await hub._boards.refresh()
    await hub.on_event(BoardsChanged(rows.stored.revision))
    await asyncio.sleep(0.2)
    assert [m for m in socket.sent if m["type"] == "error"] == [
        {"type": "error", "code": "board_retired", "message": "board 'daily' was retired"}
    ]
    assert connection.boards == {GLOBAL}
    assert hub.feed(DAY.id) is None
    assert hub.feed(GLOBAL) is not None
    sender.cancel()
    await hub.stop()


async def test_a_large_fan_out_pauses_after_every_chunk_of_followers(clock: Clock) -> None:
    """Guards the pauses in ``Hub._broadcast``'s fan-out: one frame to many followers lets
    other tasks (score updates, other boards) run after every FANOUT_CHUNK followers: not
    never (a stall as long as the whole fan-out), not after each follower, not for longer
    than one turn of the event loop; and every follower gets the frame."""
    followers = 4 * FANOUT_CHUNK + 1
    ranking, hub = await start_hub(clock, max_per_ip=followers)
    offers: list[str] = []
    for _ in range(followers):
        connection = CountedConnection(
            cast(Any, FakeSocket()), None, "10.0.0.1", None, 0.2, offers=offers
        )
        hub.register(connection)
        await hub.subscribe(connection, [GLOBAL])
    seen: set[int] = set()

    async def watch() -> None:
        while len(offers) < followers:
            seen.add(len(offers))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await score(ranking, hub, "p", 5, 1)
    await asyncio.wait_for(watcher, 3)  # four pauses of a second each would not make it
    assert seen - {0} == {FANOUT_CHUNK * k for k in range(1, 5)}
    await hub.stop()
