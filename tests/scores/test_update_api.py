"""The score update path over HTTP, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from tests.helpers import Api, new_user, now_iso, on_global, problem


async def test_completing_an_action_adds_its_points_and_ranks(api: Api) -> None:
    alice = new_user()
    first = await api.score(alice)
    assert first == {"success": True, "newScore": 10, "rank": 1, **on_global(10, 1)}
    second = await api.score(alice, "big")
    assert second == {"success": True, "newScore": 110, "rank": 1, **on_global(110, 1)}


async def test_a_replay_is_refused_and_scores_nothing(api: Api) -> None:
    alice = new_user()
    action = await api.issue(alice)
    assert (await api.complete(alice, action)).status_code == 200
    replay = await api.complete(alice, action, now_iso())
    problem(replay, 409, "action_already_used")
    board = await api.leaderboard()
    assert [(e["userId"], e["score"]) for e in board] == [(alice, 10)]
