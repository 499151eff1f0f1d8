"""Integrity of admin and abuse accounting, as an outside review attacked it (issue 12): a reset
racing a player's updates, an admin change whose audit row cannot be written, several updates
of one user in one group-commit batch, and completions refused by one velocity rule that used
up another rule's budget. See SECURITY.md "Admin changes and their audit trail"."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Limits
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text

from scoreboard.auth.principal import Principal
from scoreboard.config import Settings
from scoreboard.database import create_engine
from scoreboard.records import GLOBAL
from scoreboard.scores.models import ScoreChange
from scoreboard.scores.repository import Outcome
from scoreboard.scores.service import ScoreService, Standing
from scoreboard.tables import abuse_flags, admin_audit, score_updates, suspensions, user_scores
from tests.abuse.test_velocity import (
    Start,
    clear_of_window_edges,
    completed_once_the_actions_window_allows,
    flags,
    problem,
    score_n,
    scores,
    start,
)
from tests.conftest import Backend
from tests.helpers import Api, bearer, forge_ticket, make_token, new_user
from tests.server import ServerProcess

__all__ = ["start"]  # the velocity tests' fixture, used here too


def admin() -> dict[str, str]:
    """A fresh admin token each time: one made at import would expire (600 s) before a
    late test in a long run uses it."""
    return bearer(make_token("boss", scopes=("scores:admin",)))


async def _admin(api: Api, path: str, body: dict[str, Any]) -> Any:
    return await api.client.post(path, json=body, headers=admin())


class Stored:
    """What the database holds about one user, read straight from the tables."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    async def read(self, user_id: str) -> dict[str, Any]:
        engine = create_engine(self.url)
        try:
            async with engine.connect() as conn:
                score = await conn.scalar(
                    select(user_scores.c.score).where(
                        user_scores.c.user_id == user_id, user_scores.c.board_id == "global"
                    )
                )
                changes = (
                    await conn.execute(
                        select(score_updates.c.action_type, score_updates.c.score_change)
                        .where(score_updates.c.user_id == user_id)
                        .order_by(score_updates.c.recorded_at)
                    )
                ).all()
                audits = [
                    (row.action, json.loads(row.details))
                    for row in await conn.execute(
                        select(admin_audit)
                        .where(admin_audit.c.target_user_id == user_id)
                        .order_by(admin_audit.c.created_at)
                    )
                ]
                suspended = await conn.scalar(
                    select(func.count()).where(suspensions.c.user_id == user_id)
                )
                open_flags = await conn.scalar(
                    select(func.count()).where(
                        abuse_flags.c.user_id == user_id, abuse_flags.c.resolved_at.is_(None)
                    )
                )
        finally:
            await engine.dispose()
        return {
            "score": score,
            "changes": [(row.action_type, row.score_change) for row in changes],
            "audits": audits,
            "suspended": bool(suspended),
            "openFlags": open_flags,
        }


# --------------------------------------------------------------------------- reset races


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server (the test client runs one request at a time), velocity rules off: the
    point is the writer's atomicity alone."""
    rules_off = '{"points_per_minute": {"policy": "off"}, "actions_per_minute": {"policy": "off"}}'
    process = ServerProcess(
        backend.env(tmp_path, SCOREBOARD_ABUSE_RULES=rules_off), tmp_path / "log"
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def real_api(server: ServerProcess) -> AsyncIterator[Api]:
    limits = Limits(max_connections=64, max_keepalive_connections=64)
    async with AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        yield Api(client)


@pytest.mark.slow
async def test_a_reset_racing_updates_always_lands_on_zero(
    real_api: Api, database_url: str
) -> None:
    """Before: the reset read the score, then subtracted what it read, so updates landing in
    between survived it (newScore 50, 10, 30, 10 in four trials)."""
    stored = Stored(database_url)
    for _ in range(4):
        user = new_user()
        await real_api.score(user, "big")  # 100
        tickets = [await real_api.issue(user) for _ in range(25)]
        reset, *updates = await asyncio.gather(
            _admin(real_api, f"/api/admin/users/{user}/reset", {"reason": "bot farm"}),
            *(real_api.complete(user, ticket) for ticket in tickets),
        )
        assert reset.status_code == 200, reset.text
        assert reset.json()["newScore"] == 0
        assert [u.status_code for u in updates] == [200] * 25
        row = await stored.read(user)
        # The reset took exactly what the user held at that instant, and its audit row says
        # so; every update counted once, before it or after it.
        [taken] = [change for kind, change in row["changes"] if kind == "admin_reset"]
        [(action, details)] = row["audits"]
        assert (action, details["newScore"]) == ("reset", 0)
        assert details["previousScore"] == -taken
        assert row["score"] == sum(change for _, change in row["changes"])
        assert (details["previousScore"] - 100) + row["score"] == 10 * 25
        board = {e["userId"]: e["score"] for e in await real_api.leaderboard()}
        assert board.get(user, 0) == row["score"]


@pytest.mark.slow
async def test_a_negative_adjust_racing_a_reset_cannot_make_it_fail(
    real_api: Api, database_url: str
) -> None:
    """Before: a -30 adjust landing between the reset's read and its write left too little
    to subtract, and the reset failed with 422."""
    stored = Stored(database_url)
    for _ in range(4):
        user = new_user()
        await real_api.score(user, "big")  # 100
        reset, adjust = await asyncio.gather(
            _admin(real_api, f"/api/admin/users/{user}/reset", {"reason": "bot farm"}),
            _admin(real_api, f"/api/admin/users/{user}/adjust", {"points": -30, "reason": "fee"}),
        )
        assert reset.status_code == 200, reset.text
        assert reset.json()["newScore"] == 0
        if adjust.status_code == 200:  # it came first: 70, then the reset took all of it
            assert adjust.json()["newScore"] == 70
        else:  # it came after the reset: nothing left to take
            problem(adjust, 422, "score_would_be_negative")
        row = await stored.read(user)
        assert row["score"] == 0 == sum(change for _, change in row["changes"])
        assert [action for action, _ in row["audits"]] == (
            ["adjust", "reset"] if adjust.status_code == 200 else ["reset"]
        )


# --------------------------------------------------------------------------- audit trail


@asynccontextmanager
async def audit_rows_refused(database_url: str) -> AsyncIterator[None]:
    """While inside, the database refuses every admin_audit insert (a trigger): the change
    that row would record must not happen either."""
    engine = create_engine(database_url)
    sqlite = engine.dialect.name == "sqlite"
    refuse = (
        [
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON admin_audit "
            "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
        ]
        if sqlite
        else [
            "CREATE OR REPLACE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON admin_audit "
            "FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ]
    )
    allow = (
        ["DROP TRIGGER IF EXISTS refuse_audit"]
        if sqlite
        else ["DROP TRIGGER IF EXISTS refuse_audit ON admin_audit", "DROP FUNCTION refuse_audit()"]
    )
    try:
        async with engine.begin() as conn:
            for statement in refuse:
                await conn.execute(text(statement))
        yield
    finally:
        async with engine.begin() as conn:
            for statement in allow:
                await conn.execute(text(statement))
        await engine.dispose()


async def test_an_admin_change_never_lands_without_its_audit_row(
    api: Api, settings: Settings
) -> None:
    """Before: the change committed first and its admin_audit row after, in a transaction of
    its own; a failure in between left an unaudited change."""
    stored = Stored(settings.resolved_database_url)
    user = new_user()
    await api.score(user, "big")  # 100
    forged = await api.complete(user, forge_ticket(user, action_secret="x" * 48))
    problem(forged, 422, "invalid_action")
    [flag] = (
        await api.client.get(
            "/api/admin/flags", params={"userId": user, "status": "open"}, headers=admin()
        )
    ).json()["flags"]
    before, board = await stored.read(user), await api.leaderboard()
    assert before["openFlags"] == 1

    changes: list[tuple[str, dict[str, Any]]] = [
        (f"/api/admin/users/{user}/adjust", {"points": 50, "reason": "prize"}),
        (f"/api/admin/users/{user}/adjust", {"points": -50, "reason": "fee"}),
        (f"/api/admin/users/{user}/reset", {"reason": "bot farm"}),
        (f"/api/admin/users/{user}/suspend", {"reason": "bot farm"}),
        (f"/api/admin/flags/{flag['id']}/resolve", {"reason": "looked at it"}),
    ]
    async with audit_rows_refused(settings.resolved_database_url):
        for path, body in changes:
            refused = await _admin(api, path, body)
            problem(refused, 500, "internal_error")
            assert "Traceback" not in refused.text
            assert "audit refused" not in refused.text
        assert await stored.read(user) == before
        assert await api.leaderboard() == board
    assert (await api.score(user))["newScore"] == 110  # not suspended, nothing taken

    # With the audit table writable again every change lands, each with its row.
    for path, body in changes:
        response = await _admin(api, path, body)
        assert response.status_code == 200, response.text
    after = await stored.read(user)
    assert [action for action, _ in after["audits"]] == [
        "adjust",
        "adjust",
        "reset",
        "suspend",
        "resolve_flag",
    ]
    assert (after["score"], after["suspended"], after["openFlags"]) == (0, True, 0)


# --------------------------------------------------------------------------- batched ranks


async def test_each_update_in_one_batch_is_ranked_by_its_own_score(
    client: AsyncTestClient[Any], api: Api, settings: Settings
) -> None:
    """Before: every response of a user's batched updates carried the rank of the batch's
    last score, so a 10-point response could say rank 1 behind a rival on 30."""
    rival, player = new_user(), new_user()
    await score_n(api, rival, 3)  # 30
    tickets = [await api.issue(player) for _ in range(6)]
    service: ScoreService = client.app.state.scores
    principal = Principal(player, f"name-{player}", frozenset({"scores:write"}), 2e9)
    writer = service._repository
    commit = writer._commit_in_turn
    holder = ScoreChange(
        new_user(), None, str(uuid.uuid4()), "test", 1, datetime.now(UTC), None, (GLOBAL,)
    )

    async def held_until_the_six_are_queued(changes: Sequence[ScoreChange]) -> list[Outcome]:
        # The holder's commit waits (5 s at most) until the six are queued behind it, however
        # their velocity checks' Redis round trips interleave: the next batch takes them all.
        deadline = time.monotonic() + 5
        while holder in changes and writer._waiting < 6 and time.monotonic() < deadline:  # noqa: ASYNC110 - a counter of the writer, no event to wait on
            await asyncio.sleep(0.005)
        return await commit(changes)

    writer._commit_in_turn = held_until_the_six_are_queued  # type: ignore[method-assign]

    async def all_at_once() -> list[list[Standing]]:
        held = asyncio.ensure_future(writer.record(holder))
        await asyncio.sleep(0)  # the holder is queued first, and taken alone
        standings = await asyncio.gather(
            *(
                service.complete_action(principal, ticket, datetime.now(UTC), None)
                for ticket in tickets
            )
        )
        await held
        return standings

    # The service lives on the test client's own event loop, in another thread.
    standings = await asyncio.to_thread(client.blocking_portal.call, all_at_once)
    seen = sorted((s[0].score, s[0].rank) for s in standings)
    # Competition ranking: a tie with the rival's 30 is rank 1, below it rank 2.
    assert seen == [(10, 2), (20, 2), (30, 1), (40, 1), (50, 1), (60, 1)]
    batches = await batches_of(settings.resolved_database_url, player)
    assert sum(batches) == 6
    assert batches == [6], batches  # the case under test: one commit, many updates
    assert scores(await api.leaderboard()) == {player: 60, rival: 30}


async def batches_of(database_url: str, user_id: str) -> list[int]:
    """How many of the user's updates each commit carried (one recorded_at per batch)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(func.count())
                .where(score_updates.c.user_id == user_id)
                .group_by(score_updates.c.recorded_at)
                .order_by(score_updates.c.recorded_at)
            )
            return [int(count) for count in rows.scalars()]
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- velocity budgets


async def test_a_refused_completion_spends_no_rule_budget(start: Start) -> None:
    """Before: a completion refused by actions_per_minute had already been counted against
    points_per_minute and points_per_hour, so an honest player who hit the action limit
    was later refused, and flagged, for points never scored."""
    api = await start(
        abuse_rules={
            "actions_per_minute": {"limit": 3, "window": 2, "policy": "block"},
            "points_per_minute": {"limit": 50, "policy": "block"},
            "points_per_hour": {"limit": 50, "policy": "flag"},
        }
    )
    player = new_user()
    await clear_of_window_edges(2, margin=1.5)
    await score_n(api, player, 3)  # 30 points, the action limit reached
    for _ in range(5):  # 50 points refused
        refused = await api.complete(player, await api.issue(player))
        assert problem(refused, 429, "velocity_exceeded")["rule"] == "actions_per_minute"

    # The two-second action window moves on; the points windows do not.
    assert await completed_once_the_actions_window_allows(api, player) == 40
    assert await completed_once_the_actions_window_allows(api, player) == 50  # all of it fits
    assert scores(await api.leaderboard()) == {player: 50}
    assert {flag["rule"] for flag in await flags(api, player)} == {"actions_per_minute"}
