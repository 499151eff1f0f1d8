"""GET /api/leaderboard and /api/leaderboard/me on both backends."""

from __future__ import annotations

from tests.helpers import Api, bearer, make_token, problem


async def test_listing_follows_competition_ranking_and_first_to_reach(api: Api) -> None:
    """Of equal scores the one reached first is listed first, not the smaller user id (bob
    before alice): guards against the writer handing the rankings its rows without the time
    they changed (the ranking would fall back to the user id)."""
    await api.score("carol", "big")  # 100
    await api.score("bob")  # 10, first to reach 10
    await api.score("alice")  # 10
    await api.score("dave")
    await api.score("dave")  # 20
    board = await api.leaderboard()
    assert [(e["userId"], e["score"], e["rank"]) for e in board] == [
        ("carol", 100, 1),
        ("dave", 20, 2),
        ("bob", 10, 3),
        ("alice", 10, 3),
    ]
    assert board[0]["username"] == "name-carol"


async def test_top_ten_by_default_and_limit_up_to_one_hundred(api: Api) -> None:
    for i in range(12):
        await api.score(f"p{i:02d}")
    response = await api.client.get("/api/leaderboard", headers=bearer(api.token("reader")))
    assert len(response.json()["leaderboard"]) == 10
    assert len(await api.leaderboard(limit=100)) == 12
    assert len(await api.leaderboard(limit=3)) == 3


async def test_etag_gives_304_until_the_board_changes(api: Api) -> None:
    await api.score("alice")
    headers = bearer(api.token("reader"))
    first = await api.client.get("/api/leaderboard", headers=headers)
    etag = first.headers["etag"]
    same = await api.client.get("/api/leaderboard", headers={**headers, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    await api.score("bob")
    changed = await api.client.get("/api/leaderboard", headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert len(changed.json()["leaderboard"]) == 2


async def test_me_shows_own_rank_and_neighbours(api: Api) -> None:
    for user, kind in [("a", "big"), ("b", "big"), ("c", None), ("d", None), ("e", None)]:
        await api.score(user, kind)
    await api.score("a")  # a: 110, b: 100, c/d/e: 10
    response = await api.client.get("/api/leaderboard/me", headers=bearer(api.token("c")))
    me = response.json()
    assert (me["userId"], me["score"], me["rank"]) == ("c", 10, 3)
    assert [e["userId"] for e in me["above"]] == ["a", "b"]
    assert [(e["userId"], e["rank"]) for e in me["below"]] == [("d", 3), ("e", 3)]


async def test_me_before_any_score_has_no_rank(api: Api) -> None:
    response = await api.client.get("/api/leaderboard/me", headers=bearer(api.token("newcomer")))
    assert response.status_code == 200
    assert response.json() == {
        "userId": "newcomer",
        "username": "name-newcomer",
        "score": 0,
        "rank": None,
        "above": [],
        "below": [],
    }


async def test_reading_needs_a_token_unless_public_read(api: Api) -> None:
    anonymous = await api.client.get("/api/leaderboard")
    problem(anonymous, 401, "invalid_token")
    writer_only = make_token("w", scopes=("scores:write",))
    refused = await api.client.get("/api/leaderboard", headers=bearer(writer_only))
    assert problem(refused, 403, "insufficient_scope")["requiredScope"] == "leaderboard:read"
