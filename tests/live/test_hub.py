"""The hub and connection outboxes with fake sockets (unit level)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from scoreboard.boards.repository import StoredBoards
from scoreboard.boards.rules import DEFAULT_BOARD, Board
from scoreboard.boards.service import BoardRegistry
from scoreboard.leaderboard.ranking import MemoryRanking
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.connection import LiveConnection
from scoreboard.live.hub import Hub, SubscriptionError, TooManyConnectionsError
from scoreboard.records import GLOBAL, ScoreEvent, UserScore

DAY = Board(id="daily", reset="daily")


class NoStoredBoards:
    """Only the catalog's boards: a registry with nothing in the database."""

    async def load_now(self) -> StoredBoards:
        return StoredBoards(1, {}, {})


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeSocket:
    def __init__(self, *, blocked: bool = False) -> None:
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


@pytest.fixture
async def setup(clock: Clock) -> tuple[MemoryRanking, Hub]:
    ranking = MemoryRanking()
    registry = BoardRegistry(
        {GLOBAL: DEFAULT_BOARD, DAY.id: DAY},
        {"t": (GLOBAL, DAY.id)},
        cast(Any, NoStoredBoards()),
        clock,
    )
    await registry.start(refresh=False)
    hub = Hub(
        LeaderboardService(ranking, registry),
        top_n=3,
        interval=0.05,
        max_per_user=2,
        max_per_ip=3,
    )
    await hub.start()
    return ranking, hub


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
