"""The Redis ranking against the same rule as the in-process one, on the real Redis: the
same behaviours, a property test against MemoryRanking, and what only a shared cache needs
(atomic rebuilds, one rebuilder at a time, drift detection)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from scoreboard.leaderboard import redis_ranking
from scoreboard.leaderboard.drift import judge, structure_problem
from scoreboard.leaderboard.ranking import MemoryRanking, Neighbourhood, RankedEntry
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.records import BoardPeriod, Order, UserScore
from scoreboard.redis_urls import RedisClient
from tests.leaderboard.test_ranking import KEY, LOW, brute_force, user
from tests.redis_support import async_client

pytest_plugins = ["tests.redis_support"]


def on(users: list[UserScore]) -> list[tuple[BoardPeriod, UserScore]]:
    return [(KEY, u) for u in users]


async def drift_of(ranking: RedisRanking, committed: list[UserScore]) -> str | None:
    """What a check of every user (committed or cached) says, long after the commits."""
    expected = {u.user_id: u for u in committed}
    cached_ids: list[str] = []
    cursor, calls = -1, 0
    while cursor != 0:
        assert calls < 200, "the scan of the cached users never came back to cursor 0"
        cursor, ids = await ranking.scan_users(KEY, max(cursor, 0), 1000)
        cached_ids += ids
        calls += 1
    inspection = await ranking.inspect(KEY, sorted(set(expected) | set(cached_ids)))
    later = max((u.last_updated for u in committed), default=datetime.now(UTC)) + timedelta(days=1)
    if problem := structure_problem(inspection, expected, later, timedelta(seconds=30)):
        return problem
    verdict = judge(KEY, expected, inspection, later, timedelta(seconds=30))
    if verdict.suspects:
        return f"{len(verdict.suspects)} cached users are not in the database"
    return verdict.problems[0] if verdict.problems else None


@pytest.fixture
def ranking(redis_client: Redis, redis_prefix: str) -> RedisRanking:
    return RedisRanking(redis_client, redis_prefix)


@pytest.fixture
async def other_client(redis_url: str) -> AsyncIterator[RedisClient]:
    """A second connection pool, as another instance would have."""
    client = async_client(redis_url)
    yield client
    await client.aclose()


async def test_ties_share_a_rank_and_the_next_rank_skips(ranking: RedisRanking) -> None:
    await ranking.replace_all(
        KEY, [user("a", 50, 1), user("b", 40, 1, 2), user("c", 40, 1, 1), user("d", 30, 1)]
    )
    top = await ranking.top(KEY, 10)
    assert [(e.user_id, e.rank) for e in top] == [("a", 1), ("c", 2), ("b", 2), ("d", 4)]
    assert await ranking.rank_of(KEY, "b") == RankedEntry("b", "name-b", 40, 2)
    assert await ranking.top(KEY, 0) == []


async def test_first_to_reach_a_score_is_listed_first(ranking: RedisRanking) -> None:
    await ranking.apply(on([user("late", 10, 1, at=5), user("early", 10, 1, at=1)]))
    assert [e.user_id for e in await ranking.top(KEY, 2)] == ["early", "late"]
    await ranking.apply(on([user("late", 20, 2, at=6)]))
    await ranking.apply(on([user("early", 20, 2, at=7)]))
    assert [e.user_id for e in await ranking.top(KEY, 2)] == ["late", "early"]


async def test_changes_apply_after_the_server_lost_its_scripts(
    ranking: RedisRanking, redis_client: Redis
) -> None:
    """A restarted or failed-over Redis has no scripts: one board period's change and several
    periods' in one pipeline (sent as bare EVALSHA, refused unrun) must load them and apply.
    Guards against a pipeline whose NOSCRIPT replies are taken for answers or dropped."""
    other = BoardPeriod("weekly", "2026-W49")
    await ranking.apply(on([user("a", 10, 1)]))
    await redis_client.script_flush()
    assert await ranking.apply(on([user("a", 20, 2)])) == [RankedEntry("a", "name-a", 20, 1)]
    await redis_client.script_flush()
    applied = await ranking.apply([(KEY, user("b", 30, 1)), (other, user("b", 5, 1))])
    assert applied == [RankedEntry("b", "name-b", 30, 1), RankedEntry("b", "name-b", 5, 1)]
    assert [e.user_id for e in await ranking.top(KEY, 5)] == ["b", "a"]
    assert await ranking.rank_of(other, "b") == RankedEntry("b", "name-b", 5, 1)


async def test_a_failing_call_in_a_pipelined_apply_is_raised(
    ranking: RedisRanking, redis_client: Redis, redis_prefix: str
) -> None:
    """One period's script failing (here its sorted set is of the wrong type) must fail the
    apply, not hand back the error as that period's answer."""
    other = BoardPeriod("weekly", "2026-W49")
    await redis_client.set(ranking.keys(other).structures[0], "not a sorted set")
    with pytest.raises(ResponseError):
        await ranking.apply([(KEY, user("c", 1, 1)), (other, user("c", 1, 1))])


async def test_a_stale_version_never_overwrites_a_newer_one(ranking: RedisRanking) -> None:
    await ranking.apply(on([user("a", 30, 3)]))
    revision = await ranking.revision(KEY)
    await ranking.apply(on([user("a", 20, 2)]))
    await ranking.apply(on([user("a", 99, 3)]))  # the same version is not newer either
    assert await ranking.rank_of(KEY, "a") == RankedEntry("a", "name-a", 30, 1)
    assert await ranking.revision(KEY) == revision
    assert await ranking.rank_of(KEY, "nobody") is None


async def test_versions_applied_concurrently_and_out_of_order_settle_on_the_newest(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    elsewhere = RedisRanking(other_client, redis_prefix)  # another instance, same cache
    updates = [
        user(f"u{i % 5}", version * 10 + i % 5, version)
        for version in range(1, 41)
        for i in range(5)
    ]
    random.Random(4).shuffle(updates)
    await asyncio.gather(
        *((ranking if i % 2 else elsewhere).apply(on([update])) for i, update in enumerate(updates))
    )
    top = await ranking.top(KEY, 10)
    assert [(e.user_id, e.score) for e in top] == [(f"u{i}", 400 + i) for i in range(4, -1, -1)]
    assert await drift_of(ranking, [u for u in updates if u.version == 40]) is None


async def test_around_gives_neighbours_with_their_ranks(ranking: RedisRanking) -> None:
    await ranking.replace_all(KEY, [user(f"u{i}", 100 - i * 10, 1) for i in range(6)])
    around = await ranking.around(KEY, "u3", 2)
    assert around is not None
    assert around.me == RankedEntry("u3", "name-u3", 70, 4)
    assert [e.user_id for e in around.above] == ["u1", "u2"]
    assert [(e.user_id, e.rank) for e in around.below] == [("u4", 5), ("u5", 6)]
    assert await ranking.around(KEY, "nobody", 2) is None


async def test_scores_up_to_a_quadrillion_rank_exactly(ranking: RedisRanking) -> None:
    big = 10**15
    await ranking.apply(on([user("a", big, 1), user("b", big - 1, 1), user("c", big, 1, at=1)]))
    assert [(e.user_id, e.score, e.rank) for e in await ranking.top(KEY, 3)] == [
        ("a", big, 1),
        ("c", big, 1),
        ("b", big - 1, 3),
    ]
    with pytest.raises(ValueError, match="outside"):
        await ranking.apply(on([user("d", 2**53, 1)]))


async def test_the_revision_keeps_growing_after_redis_lost_it(
    ranking: RedisRanking, redis_client: Redis
) -> None:
    await ranking.apply(on([user("a", 1, 1)]))
    before = await ranking.revision(KEY)
    await redis_client.delete(ranking.keys(KEY).revision)
    await ranking.apply(on([user("a", 2, 2)]))
    assert await ranking.revision(KEY) > before


batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([f"user{i}" for i in range(10)]),
            st.integers(min_value=0, max_value=5),  # few distinct scores: many ties
            st.integers(min_value=0, max_value=3),  # timestamps collide too
            st.integers(min_value=1, max_value=6),  # versions repeat and go backwards
        ),
        min_size=1,
        max_size=4,
    ),
    max_size=15,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=batches,
    limit=st.integers(min_value=1, max_value=12),
    offset=st.integers(min_value=0, max_value=10),
    order=st.sampled_from(Order),
)
async def test_redis_ranking_equals_memory_ranking_after_any_updates(
    redis_client: Redis,
    redis_prefix: str,
    batches: list[list[tuple[str, int, int, int]]],
    limit: int,
    offset: int,
    order: Order,
) -> None:
    key = BoardPeriod("b", uuid.uuid4().hex, order)
    ranking = RedisRanking(redis_client, redis_prefix)
    memory = MemoryRanking()
    truth: dict[str, UserScore] = {}
    for batch in batches:
        updates = [user(user_id, score, version, at) for user_id, score, at, version in batch]
        before = (await memory.revision(key), await ranking.revision(key))
        changes = [(key, u) for u in updates]
        assert await ranking.apply(changes) == await memory.apply(changes)
        changed = (await memory.revision(key) > before[0], await ranking.revision(key) > before[1])
        assert changed[0] == changed[1]
        for update in updates:
            if update.user_id not in truth or update.version > truth[update.user_id].version:
                truth[update.user_id] = update
    expected = brute_force(truth, order)
    assert await memory.top(key, 100) == expected
    assert await ranking.top(key, limit) == expected[:limit]
    assert await ranking.top(key, limit, offset) == expected[offset : offset + limit]
    assert await ranking.total(key) == len(expected)
    some = [*sorted(truth)[1::2], "nobody"]
    assert await ranking.ranks_of(key, some) == await memory.ranks_of(key, some)
    for score in {s + d for s in (e.score for e in expected) for d in (-1, 0, 1)}:
        assert await ranking.rank_for(key, score) == await memory.rank_for(key, score)
    for entry in expected:
        assert await ranking.rank_of(key, entry.user_id) == entry
        assert await ranking.around(key, entry.user_id, 2) == await memory.around(
            key, entry.user_id, 2
        )


async def test_readers_see_the_old_board_until_a_rebuild_swaps_in_the_new_one(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    await ranking.replace_all(KEY, [user(f"old{i}", 1000 + i, 1) for i in range(100)])
    old_top = await ranking.top(KEY, 3)
    fresh = [user(f"new{i}", i, 1) for i in range(20_000)]
    new_top = [
        RankedEntry(f"new{i}", f"name-new{i}", i, 20_000 - i) for i in (19_999, 19_998, 19_997)
    ]
    reader = RedisRanking(other_client, redis_prefix)
    rebuild = asyncio.create_task(ranking.replace_all(KEY, fresh))
    reads_during_rebuild = 0
    deadline = time.monotonic() + 20  # well under a second, unless users are sent many times
    while not rebuild.done():
        assert time.monotonic() < deadline, "the rebuild takes far too long"
        assert await reader.top(KEY, 3) in (old_top, new_top)
        reads_during_rebuild += 1
    await rebuild
    assert reads_during_rebuild > 1
    assert [e.user_id for e in await reader.top(KEY, 2)] == ["new19999", "new19998"]
    assert await reader.rank_of(KEY, "old0") is None
    assert await drift_of(reader, fresh) is None
    assert [key async for key in other_client.scan_iter(f"{redis_prefix}*rebuild:*")] == []


async def test_a_failed_rebuild_leaves_the_old_board_and_no_leftovers(
    ranking: RedisRanking, redis_client: Redis, redis_prefix: str
) -> None:
    await ranking.replace_all(KEY, [user("a", 5, 1)])
    snapshot = [user(f"u{i}", i, 1) for i in range(25_000)] + [user("huge", 2**53, 1)]
    rebuild = asyncio.create_task(ranking.replace_all(KEY, snapshot))
    await asyncio.wait([rebuild], timeout=20)  # as above
    assert rebuild.done(), "the rebuild takes far too long"
    with pytest.raises(ValueError, match="outside"):
        await rebuild
    assert [e.user_id for e in await ranking.top(KEY, 5)] == ["a"]
    assert [key async for key in redis_client.scan_iter(f"{redis_prefix}*rebuild:*")] == []


async def test_rebuilding_from_nothing_empties_the_board(ranking: RedisRanking) -> None:
    await ranking.apply(on([user("a", 5, 1)]))
    await ranking.replace_all(KEY, [])
    assert await ranking.top(KEY, 10) == []
    assert await drift_of(ranking, []) is None


async def test_only_one_instance_holds_the_rebuild_lock(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    elsewhere = RedisRanking(other_client, redis_prefix)

    async def try_rebuild(candidate: RedisRanking) -> bool:
        async with candidate.rebuild_lock(KEY) as acquired:
            await asyncio.sleep(0.1)
            return acquired

    assert sorted(await asyncio.gather(try_rebuild(ranking), try_rebuild(elsewhere))) == [
        False,
        True,
    ]
    async with elsewhere.rebuild_lock(KEY) as acquired:
        assert acquired  # released by whoever held it


async def test_an_expired_holder_does_not_release_the_next_holders_lock(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    elsewhere = RedisRanking(other_client, redis_prefix)
    late = ranking.rebuild_lock(KEY, lease_seconds=0.1)
    assert await late.__aenter__()
    await asyncio.sleep(0.2)  # its lease runs out
    async with elsewhere.rebuild_lock(KEY) as acquired:
        assert acquired
        await late.__aexit__(None, None, None)  # the first holder finishes late
        async with ranking.rebuild_lock(KEY) as acquired_again:
            assert not acquired_again  # still held by the second holder


async def test_a_change_applied_during_a_rebuild_survives_the_older_snapshot(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    elsewhere = RedisRanking(other_client, redis_prefix)
    async with ranking.rebuild_lock(KEY) as acquired:
        assert acquired
        snapshot = [user("a", 10, 1), user("b", 20, 1)]  # read from the database now
        await elsewhere.apply(on([user("a", 30, 2)]))  # committed and applied after the read
        await ranking.replace_all(KEY, snapshot)
    assert [(e.user_id, e.score) for e in await ranking.top(KEY, 2)] == [("a", 30), ("b", 20)]
    # Without the lock nothing is journaled, and the older snapshot wins: why it exists.
    await elsewhere.apply(on([user("b", 40, 2)]))
    await ranking.replace_all(KEY, [user("a", 30, 2), user("b", 20, 1)])
    assert await ranking.rank_of(KEY, "b") == RankedEntry("b", "name-b", 20, 2)


async def test_drift_is_detected_and_repaired_by_a_rebuild(
    ranking: RedisRanking, redis_client: Redis
) -> None:
    committed = [user(f"u{i}", i * 3, 2) for i in range(50)]
    await ranking.replace_all(KEY, committed)
    assert await drift_of(ranking, committed) is None
    await ranking.apply(on([user("u1", 500, 3)]))  # newer than the snapshot: not drift
    assert await drift_of(ranking, committed) is None

    corruptions: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: redis_client.delete(ranking.keys(KEY).board), "structures disagree"),
        (lambda: redis_client.delete(*ranking.keys(KEY).structures), "holds nothing"),
        (lambda: redis_client.zadd(ranking.keys(KEY).board, {"u7": 999}), "u7 differs"),
        (lambda: redis_client.hdel(ranking.keys(KEY).users, "u9"), "structures disagree"),
        (lambda: ranking.apply(on([user("ghost", 1, 1)])), "1 cached users are not in the"),
    ]
    for corrupt, symptom in corruptions:
        await corrupt()
        drift = await drift_of(ranking, committed)
        assert drift is not None
        assert symptom in drift
        await ranking.replace_all(KEY, committed)
        assert await drift_of(ranking, committed) is None
    stale = [*committed[:5], user("u5", 15, 3), *committed[6:]]
    assert await drift_of(ranking, stale) == "user u5 is at version 2, not 3"


async def test_a_board_periods_keys_share_one_slot_and_boards_spread_over_slots(
    ranking: RedisRanking,
) -> None:
    keys = ranking.keys(KEY)
    names = [*keys.all, keys.rebuild_lock, *keys.loading("token")]
    assert len({key_slot(name.encode()) for name in names}) == 1
    boards = {
        key_slot(ranking.keys(BoardPeriod(f"board{i}", "2026-W49")).board.encode())
        for i in range(20)
    }
    assert len(boards) >= 15  # 20 boards on 16,384 slots: nearly all apart


async def test_a_dropped_period_leaves_no_keys_and_its_neighbours_alone(
    ranking: RedisRanking, redis_client: Redis, redis_prefix: str
) -> None:
    other = BoardPeriod("global", "all.2")
    await ranking.apply([(KEY, user("a", 5, 1)), (other, user("a", 9, 1))])
    await ranking.drop(KEY)
    assert await ranking.top(KEY, 5) == []
    assert [e.score for e in await ranking.top(other, 5)] == [9]
    left = [key async for key in redis_client.scan_iter(f"{redis_prefix}*")]
    assert left
    assert all(b"{global/all.2}" in key for key in left)


async def snapshot_in(*chunks: list[UserScore]) -> AsyncIterator[Sequence[UserScore]]:
    for chunk in chunks:
        yield chunk


async def test_around_with_no_neighbours_asked_for_is_the_user_alone(
    ranking: RedisRanking,
) -> None:
    """Guards ``RedisRanking.around``'s span: a radius of 0 (the API allows it) gives the
    user without neighbours, as MemoryRanking does, not one on each side."""
    await ranking.replace_all(KEY, [user(f"u{i}", 100 - i * 10, 1) for i in range(3)])
    assert await ranking.around(KEY, "u1", 0) == Neighbourhood(
        RankedEntry("u1", "name-u1", 90, 2), [], []
    )


async def test_a_rebuilt_board_is_in_the_boards_order_and_later_changes_fit_in(
    ranking: RedisRanking,
) -> None:
    """Guards the listing order a rebuild writes (``RedisRanking._pack``): on a lower-is-better
    board the rebuilt listing is lowest first (the order is passed on, not left to the
    default), and users applied after a rebuild are listed among the rebuilt ones by score
    (both write the listing order at the same ZSET score)."""
    await ranking.replace_all(
        LOW, [user("slow", 900, 1), user("fast", 300, 1), user("tied", 300, 1, at=1)]
    )
    assert [(e.user_id, e.rank) for e in await ranking.top(LOW, 3)] == [
        ("fast", 1),
        ("tied", 1),
        ("slow", 3),
    ]
    await ranking.replace_all(KEY, [user("a", 50, 1), user("b", 10, 1)])
    await ranking.apply(on([user("c", 30, 1), user("d", 5, 1)]))
    assert [(e.user_id, e.rank) for e in await ranking.top(KEY, 4)] == [
        ("a", 1),
        ("c", 2),
        ("b", 3),
        ("d", 4),
    ]
    around = await ranking.around(KEY, "c", 1)
    assert around is not None
    assert ([e.user_id for e in around.above], [e.user_id for e in around.below]) == (["a"], ["b"])


async def test_a_rebuild_sends_each_user_once_and_says_how_many(
    ranking: RedisRanking, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the chunking of ``RedisRanking.replace_all`` and the count ``load`` returns
    (``scoreboard rebuild-cache`` and the rebuild log report it): the snapshot goes to Redis
    in consecutive chunks of LOAD_BATCH users, each user once (overlapping chunks would
    send every user up to LOAD_BATCH times), and load returns the users loaded over all
    its chunks."""
    monkeypatch.setattr(redis_ranking, "LOAD_BATCH", 4)
    sizes: list[int] = []
    load = ranking.load

    async def counted(key: BoardPeriod, chunks: AsyncIterator[Sequence[UserScore]]) -> int:
        async def passed_on() -> AsyncIterator[Sequence[UserScore]]:
            async for chunk in chunks:
                sizes.append(len(chunk))
                yield chunk

        return await load(key, passed_on())

    monkeypatch.setattr(ranking, "load", counted)
    await ranking.replace_all(KEY, [user(f"u{i}", i, 1) for i in range(9)])
    assert sizes == [4, 4, 1]
    assert await ranking.total(KEY) == 9
    loaded = await load(KEY, snapshot_in([user("a", 1, 1), user("b", 2, 1)], [user("c", 3, 1)]))
    assert loaded == 3


async def test_overlapping_rebuilds_each_swap_in_only_their_own_snapshot(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    """Guards the fresh token of ``RedisRanking.load``'s loading keys: two rebuilds of one
    period that overlap (the first one's lease ran out) load apart, so the second swaps in
    its snapshot and nothing of the half-loaded first one."""
    elsewhere = RedisRanking(other_client, redis_prefix)
    first_chunk_in, go_on = asyncio.Event(), asyncio.Event()

    async def held_up() -> AsyncIterator[Sequence[UserScore]]:
        yield [user("stale", 99, 1)]
        yield [user("stale2", 98, 1)]
        first_chunk_in.set()  # load waits for one chunk's send before taking the next
        await go_on.wait()

    first = asyncio.create_task(ranking.load(KEY, held_up()))
    await asyncio.wait_for(first_chunk_in.wait(), 5)
    await elsewhere.replace_all(KEY, [user("fresh", 10, 1)])
    assert [e.user_id for e in await elsewhere.top(KEY, 5)] == ["fresh"]
    go_on.set()
    assert await first == 2


async def test_a_long_rebuild_keeps_its_locks(
    ranking: RedisRanking, other_client: Redis, redis_prefix: str
) -> None:
    """Guards the lease renewal in ``RedisRanking._send`` (and the key ``load`` passes it):
    a rebuild that outlasts its locks' leases renews the rebuild lock and the check lock
    (a check that rebuilds holds both) after every chunk, so no other instance takes either
    from under it. (About 1.5 s.)"""
    elsewhere = RedisRanking(other_client, redis_prefix)

    async def slowly() -> AsyncIterator[Sequence[UserScore]]:
        for i in range(5):  # 1.5 s in all, a lease of 1 s, renewed every 0.3 s
            yield [user(f"u{i}", i, 1)]
            await asyncio.sleep(0.3)

    async with (
        ranking.check_lock(KEY, lease_seconds=1.0) as checking,
        ranking.rebuild_lock(KEY, lease_seconds=1.0) as rebuilding,
    ):
        assert checking
        assert rebuilding
        assert await ranking.load(KEY, slowly()) == 5
        async with elsewhere.check_lock(KEY) as theirs:
            assert not theirs
        async with elsewhere.rebuild_lock(KEY) as theirs:
            assert not theirs


async def test_scanning_the_cached_users_pages_through_them_in_the_batches_asked_for(
    ranking: RedisRanking,
) -> None:
    """Guards ``RedisRanking.scan_users``' cursor and count: paging from cursor 0 until it
    comes back 0 gives every cached user, never restarting from the first, in batches of
    about the size asked for (the audit asks for 200; Redis's default of 10 would need 20
    round trips where one does)."""
    users = {f"u{i:04}" for i in range(1000)}  # a real hash table, not a listpack
    await ranking.replace_all(KEY, [user(u, 1, 1) for u in users])
    found: set[str] = set()
    cursor, calls = 0, 0
    while calls < 10:
        cursor, ids = await ranking.scan_users(KEY, cursor, 500)
        found.update(ids)
        calls += 1
        if cursor == 0:
            break
    assert found == users
    assert calls <= 3
