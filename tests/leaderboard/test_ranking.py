"""The in-process ranking against the rule itself: brute force over every user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scoreboard.leaderboard.ranking import MemoryRanking, RankedEntry
from scoreboard.scores.models import UserScore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def user(user_id: str, score: int, version: int, at: float = 0) -> UserScore:
    return UserScore(user_id, f"name-{user_id}", score, version, T0 + timedelta(seconds=at))


def brute_force(users: dict[str, UserScore]) -> list[RankedEntry]:
    ordered = sorted(users.values(), key=lambda u: (-u.score, u.last_updated, u.user_id))
    return [
        RankedEntry(u.user_id, u.username, u.score, 1 + sum(o.score > u.score for o in ordered))
        for u in ordered
    ]


async def test_ties_share_a_rank_and_the_next_rank_skips() -> None:
    ranking = MemoryRanking()
    await ranking.replace_all(
        [user("a", 50, 1), user("b", 40, 1, 2), user("c", 40, 1, 1), user("d", 30, 1)]
    )
    top = await ranking.top(10)
    assert [(e.user_id, e.rank) for e in top] == [("a", 1), ("c", 2), ("b", 2), ("d", 4)]


async def test_first_to_reach_a_score_is_listed_first() -> None:
    ranking = MemoryRanking()
    await ranking.apply([user("late", 10, 1, at=5), user("early", 10, 1, at=1)])
    assert [e.user_id for e in await ranking.top(2)] == ["early", "late"]
    await ranking.apply([user("late", 20, 2, at=6)])
    await ranking.apply([user("early", 20, 2, at=7)])
    assert [e.user_id for e in await ranking.top(2)] == ["late", "early"]


async def test_a_stale_version_never_overwrites_a_newer_one() -> None:
    ranking = MemoryRanking()
    await ranking.apply([user("a", 30, 3)])
    revision = await ranking.revision()
    await ranking.apply([user("a", 20, 2)])
    standing = await ranking.rank_of("a")
    assert standing is not None
    assert standing.score == 30
    assert await ranking.revision() == revision


async def test_around_gives_neighbours_with_their_ranks() -> None:
    ranking = MemoryRanking()
    await ranking.replace_all([user(f"u{i}", 100 - i * 10, 1) for i in range(6)])
    around = await ranking.around("u3", 2)
    assert around is not None
    assert around.me == RankedEntry("u3", "name-u3", 70, 4)
    assert [e.user_id for e in around.above] == ["u1", "u2"]
    assert [(e.user_id, e.rank) for e in around.below] == [("u4", 5), ("u5", 6)]
    assert await ranking.around("nobody", 2) is None


updates = st.lists(
    st.tuples(
        st.sampled_from([f"user{i}" for i in range(12)]),
        st.integers(min_value=0, max_value=6),  # few distinct scores: many ties
        st.integers(min_value=0, max_value=4),  # timestamps collide too
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(updates=updates, limit=st.integers(min_value=1, max_value=15))
async def test_ranking_equals_brute_force_after_any_updates(
    updates: list[tuple[str, int, int]], limit: int
) -> None:
    ranking = MemoryRanking()
    truth: dict[str, UserScore] = {}
    for user_id, score, at in updates:
        version = truth[user_id].version + 1 if user_id in truth else 1
        truth[user_id] = user(user_id, score, version, at)
        await ranking.apply([truth[user_id]])
    expected = brute_force(truth)
    assert await ranking.top(limit) == expected[:limit]
    for entry in expected:
        assert await ranking.rank_of(entry.user_id) == entry
        around = await ranking.around(entry.user_id, 2)
        assert around is not None
        index = expected.index(entry)
        assert around.above == expected[max(0, index - 2) : index]
        assert around.below == expected[index + 1 : index + 3]
