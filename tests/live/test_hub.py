"""The hub and connection outboxes with fake sockets (unit level)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from scoreboard.leaderboard.ranking import MemoryRanking
from scoreboard.leaderboard.service import LeaderboardService
from scoreboard.live.broadcaster import ScoreEvent
from scoreboard.live.connection import LiveConnection
from scoreboard.live.hub import Hub, TooManyConnectionsError
from scoreboard.scores.models import UserScore


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


def connect(hub: Hub, socket: FakeSocket, user: str, ip: str = "10.0.0.1") -> LiveConnection:
    connection = LiveConnection(
        socket=cast(Any, socket), user_id=user, client_ip=ip, expires_at=None, send_timeout=0.2
    )
    hub.register(connection)
    return connection


async def score(ranking: MemoryRanking, hub: Hub, user: str, points: int, version: int) -> None:
    await ranking.apply([UserScore(user, user, points, version, datetime.now(UTC))])
    await hub.on_score(ScoreEvent(user, points, 1))


@pytest.fixture
async def setup() -> tuple[MemoryRanking, Hub]:
    ranking = MemoryRanking()
    hub = Hub(LeaderboardService(ranking), top_n=3, interval=0.05, max_per_user=2, max_per_ip=3)
    await hub.start()
    return ranking, hub


async def test_bursts_are_coalesced_and_a_blocked_client_is_closed_alone(
    setup: tuple[MemoryRanking, Hub],
) -> None:
    ranking, hub = setup
    fast, stuck = FakeSocket(), FakeSocket(blocked=True)
    reader = connect(hub, fast, "fast")
    sloth = connect(hub, stuck, "stuck")
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
    connection = connect(hub, socket, "watcher")
    sender = asyncio.create_task(connection.run_sender())
    for i in range(3):
        await score(ranking, hub, f"top{i}", 100, 1)
    await asyncio.sleep(0.2)
    version = hub.version
    await score(ranking, hub, "low", 1, 1)  # below the top 3
    await asyncio.sleep(0.2)
    assert hub.version == version
    assert len([m for m in socket.sent if m["type"] == "leaderboard_update"]) == 1
    sender.cancel()
    await hub.stop()


async def test_limits_per_user_and_per_address(setup: tuple[MemoryRanking, Hub]) -> None:
    _, hub = setup
    connect(hub, FakeSocket(), "u")
    connect(hub, FakeSocket(), "u")
    with pytest.raises(TooManyConnectionsError, match="per user"):
        connect(hub, FakeSocket(), "u")
    connect(hub, FakeSocket(), "v")
    with pytest.raises(TooManyConnectionsError, match="per address"):
        connect(hub, FakeSocket(), "w")
    connect(hub, FakeSocket(), "w", ip="10.0.0.2")
    assert hub.connection_count == 4
    await hub.stop()
