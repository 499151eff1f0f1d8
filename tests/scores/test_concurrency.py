"""Exactly-once and no lost updates under real concurrency, against a real server process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import AsyncClient, Limits
from sqlalchemy import func, select

from scoreboard.database import create_engine
from scoreboard.tables import score_updates, user_scores
from tests.conftest import Backend
from tests.helpers import Api, problem
from tests.server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[ServerProcess]:
    # Velocity rules off: fifty copies of one ticket are abuse that a blocking rule would
    # answer with 429; here the point is the database's exactly-once guarantee alone.
    rules_off = '{"points_per_minute": {"policy": "off"}, "actions_per_minute": {"policy": "off"}}'
    env = backend.env(tmp_path, SCOREBOARD_ABUSE_RULES=rules_off)
    process = ServerProcess(env, tmp_path / "server.log")
    process.start()
    yield process
    process.stop()


async def _stored(database_url: str) -> tuple[dict[str, int], dict[str, int], int]:
    """Scores per user, audit sums per user, audit row count: straight from the database."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            scores = dict(
                (await conn.execute(select(user_scores.c.user_id, user_scores.c.score))).all()
            )
            audit_query = select(
                score_updates.c.user_id, func.sum(score_updates.c.score_change)
            ).group_by(score_updates.c.user_id)
            audits = {user: int(total) for user, total in (await conn.execute(audit_query))}
            rows = (
                await conn.execute(select(func.count()).select_from(score_updates))
            ).scalar_one()
            return scores, audits, rows
    finally:
        await engine.dispose()


def _client(server: ServerProcess) -> AsyncClient:
    return AsyncClient(
        base_url=server.url,
        timeout=30,
        limits=Limits(max_connections=100, max_keepalive_connections=100),
    )


async def test_fifty_parallel_replays_score_exactly_once(
    server: ServerProcess, database_url: str
) -> None:
    async with _client(server) as client:
        api = Api(client)
        action = await api.issue("racer")
        responses = await asyncio.gather(*(api.complete("racer", action) for _ in range(50)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * 49
        for response in responses:
            if response.status_code == 409:
                problem(response, 409, "action_already_used")
        winner = next(r for r in responses if r.status_code == 200)
        assert winner.json()["newScore"] == 10
        assert await api.leaderboard() == [
            {"userId": "racer", "username": "name-racer", "score": 10, "rank": 1}
        ]
    scores, audits, rows = await _stored(database_url)
    assert scores == {"racer": 10}
    assert audits == {"racer": 10}
    assert rows == 1


async def test_two_hundred_updates_from_twenty_users_all_add_up(
    server: ServerProcess, database_url: str
) -> None:
    users = [f"player-{i:02d}" for i in range(20)]
    async with _client(server) as client:
        api = Api(client)
        actions = [
            (user, await api.issue(user, "big" if i % 3 else None))
            for user in users
            for i in range(10)
        ]
        responses = await asyncio.gather(*(api.complete(user, action) for user, action in actions))
        assert [r.status_code for r in responses] == [200] * 200
        # Each request saw its own update: per user, the new scores are all distinct.
        per_user: dict[str, set[int]] = {}
        for (user, _), response in zip(actions, responses, strict=True):
            per_user.setdefault(user, set()).add(response.json()["newScore"])
        assert all(len(seen) == 10 for seen in per_user.values())
        board = {e["userId"]: e["score"] for e in await api.leaderboard()}
    scores, audits, rows = await _stored(database_url)
    expected = sum(10 if i % 3 == 0 else 100 for i in range(10))
    assert rows == 200
    assert scores == audits == board == {user: expected for user in users}
