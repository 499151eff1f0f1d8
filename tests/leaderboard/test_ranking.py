"""The in-process ranking against the rule itself: brute force over every user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scoreboard.leaderboard.ranking import MemoryRanking, RankedEntry
from scoreboard.records import BoardPeriod, Order, UserScore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = BoardPeriod("global", "all")
LOW = BoardPeriod("times", "2026-12-02", Order.ASC)


def user(user_id: str, score: int, version: int, at: float = 0) -> UserScore:
    return UserScore(user_id, f"name-{user_id}", score, version, T0 + timedelta(seconds=at))


def brute_force(users: dict[str, UserScore], order: Order = Order.DESC) -> list[RankedEntry]:
    """The rule itself: better scores first, then first to reach them, then user id; rank is
    one more than the users with a strictly better score."""
    sign = -1 if order is Order.DESC else 1
    ordered = sorted(users.values(), key=lambda u: (sign * u.score, u.last_updated, u.user_id))
    return [
        RankedEntry(
            u.user_id,
            u.username,
            u.score,
            1 + sum(sign * o.score < sign * u.score for o in ordered),
        )
        for u in ordered
    ]


async def test_ties_share_a_rank_and_the_next_rank_skips() -> None:
    ranking = MemoryRanking()
    await ranking.replace_all(
        KEY, [user("a", 50, 1), user("b", 40, 1, 2), user("c", 40, 1, 1), user("d", 30, 1)]
    )
    top = await ranking.top(KEY, 10)
    assert [(e.user_id, e.rank) for e in top] == [("a", 1), ("c", 2), ("b", 2), ("d", 4)]


async def test_first_to_reach_a_score_is_listed_first() -> None:
    ranking = MemoryRanking()
    await ranking.apply([(KEY, user("late", 10, 1, at=5)), (KEY, user("early", 10, 1, at=1))])
    assert [e.user_id for e in await ranking.top(KEY, 2)] == ["early", "late"]
    await ranking.apply([(KEY, user("late", 20, 2, at=6))])
    await ranking.apply([(KEY, user("early", 20, 2, at=7))])
    assert [e.user_id for e in await ranking.top(KEY, 2)] == ["late", "early"]


async def test_a_stale_version_never_overwrites_a_newer_one() -> None:
    ranking = MemoryRanking()
    await ranking.apply([(KEY, user("a", 30, 3))])
    revision = await ranking.revision(KEY)
    await ranking.apply([(KEY, user("a", 20, 2))])
    standing = await ranking.rank_of(KEY, "a")
    assert standing is not None
    assert standing.score == 30
    assert await ranking.revision(KEY) == revision


async def test_around_gives_neighbours_with_their_ranks() -> None:
    ranking = MemoryRanking()
    await ranking.replace_all(KEY, [user(f"u{i}", 100 - i * 10, 1) for i in range(6)])
    around = await ranking.around(KEY, "u3", 2)
    assert around is not None
    assert around.me == RankedEntry("u3", "name-u3", 70, 4)
    assert [e.user_id for e in around.above] == ["u1", "u2"]
    assert [(e.user_id, e.rank) for e in around.below] == [("u4", 5), ("u5", 6)]
    assert await ranking.around(KEY, "nobody", 2) is None


updates = st.lists(
    st.tuples(
        st.sampled_from([f"user{i}" for i in range(12)]),
        st.integers(min_value=0, max_value=6),  # few distinct scores: many ties
        st.integers(min_value=0, max_value=4),  # timestamps collide too
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    updates=updates,
    limit=st.integers(min_value=1, max_value=15),
    offset=st.integers(min_value=0, max_value=12),
    order=st.sampled_from(Order),
)
async def test_ranking_equals_brute_force_after_any_updates(
    updates: list[tuple[str, int, int]], limit: int, offset: int, order: Order
) -> None:
    key = BoardPeriod("b", "p", order)
    ranking = MemoryRanking()
    truth: dict[str, UserScore] = {}
    for user_id, score, at in updates:
        version = truth[user_id].version + 1 if user_id in truth else 1
        truth[user_id] = user(user_id, score, version, at)
        standing = (await ranking.apply([(key, truth[user_id])]))[0]
        assert standing is not None
        assert standing.score == score
    expected = brute_force(truth, order)
    assert await ranking.top(key, limit) == expected[:limit]
    assert await ranking.top(key, limit, offset) == expected[offset : offset + limit]
    assert await ranking.total(key) == len(expected)
    some = [*sorted(truth)[::2], "nobody"]
    assert await ranking.ranks_of(key, some) == [e for e in expected if e.user_id in some]
    for score in {s + d for s in (e.score for e in expected) for d in (-1, 0, 1)}:
        sign = -1 if order is Order.DESC else 1
        better = sum(sign * u.score < sign * score for u in truth.values())
        assert await ranking.rank_for(key, score) == 1 + better
    for entry in expected:
        assert await ranking.rank_of(key, entry.user_id) == entry
        around = await ranking.around(key, entry.user_id, 2)
        assert around is not None
        index = expected.index(entry)
        assert around.above == expected[max(0, index - 2) : index]
        assert around.below == expected[index + 1 : index + 3]


async def test_lower_is_better_on_an_ascending_board() -> None:
    ranking = MemoryRanking()
    await ranking.replace_all(
        LOW, [user("slow", 900, 1), user("fast", 300, 1), user("tied", 300, 1, at=1)]
    )
    assert [(e.user_id, e.rank) for e in await ranking.top(LOW, 3)] == [
        ("fast", 1),
        ("tied", 1),
        ("slow", 3),
    ]


async def test_boards_and_periods_are_separate_and_a_dropped_one_is_gone() -> None:
    ranking = MemoryRanking()
    tomorrow = BoardPeriod("global", "tomorrow")
    await ranking.apply([(KEY, user("a", 5, 1)), (tomorrow, user("a", 7, 1))])
    assert [e.score for e in await ranking.top(KEY, 5)] == [5]
    assert [e.score for e in await ranking.top(tomorrow, 5)] == [7]
    assert ranking.periods == 2
    await ranking.drop(KEY)
    assert await ranking.top(KEY, 5) == []
    assert ranking.periods == 1
    before = await ranking.revision(KEY)  # reading a period nobody scored in allocates nothing
    assert ranking.periods == 1
    assert await ranking.revision(KEY) >= before


async def test_a_period_nobody_scored_in_reads_as_empty() -> None:
    """Guards ``MemoryRanking``'s reads of a period it holds nothing for (``rank_for``,
    ``around``, ``drop``): a score would rank first, nobody has neighbours, and dropping it
    (twice, as pruning may) is a no-op, not an error."""
    ranking = MemoryRanking()
    assert await ranking.rank_for(KEY, 10) == 1
    assert await ranking.around(KEY, "a", 2) is None
    await ranking.drop(KEY)
    await ranking.apply([(KEY, user("a", 5, 1))])
    await ranking.drop(KEY)
    await ranking.drop(KEY)
    assert ranking.periods == 0
