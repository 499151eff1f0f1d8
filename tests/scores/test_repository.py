"""The group-commit writer under failure: isolation, back-pressure, and no hung callers."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from scoreboard.abuse.repository import AdminNote
from scoreboard.database import create_engine, is_unavailable, migrate
from scoreboard.errors import (
    ActionAlreadyUsed,
    NoActiveBoard,
    ScoreWouldBeNegative,
    ServiceUnavailable,
)
from scoreboard.metrics import Metrics
from scoreboard.records import GLOBAL, BoardPeriod
from scoreboard.scores.models import Recorded, ScoreChange
from scoreboard.scores.repository import ScoreRepository
from scoreboard.tables import user_scores
from tests.helpers import board_registry, samples, value

KEY = BoardPeriod(GLOBAL, "all")


def change(user: str, points: int = 10) -> ScoreChange:
    return ScoreChange(
        user_id=user,
        username=user,
        action_id=str(uuid.uuid4()),
        action_type="test",
        points=points,
        timestamp=datetime.now(UTC),
        client_ip="127.0.0.1",
        boards=(GLOBAL,),
    )


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[ScoreRepository]:
    engine = create_engine(database_url)
    await migrate(engine)
    repository = ScoreRepository(engine, await board_registry(engine), max_batch=8)
    await repository.start()
    yield repository
    await repository.stop()
    await engine.dispose()


async def test_one_bad_change_does_not_sink_its_batch(repository: ScoreRepository) -> None:
    # A negative first score breaks the score >= 0 check: only that change may fail.
    changes = [change("good-1"), change("bad", points=-5), change("good-2"), change("good-3")]
    outcomes = await asyncio.gather(
        *(repository.record(c) for c in changes), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [Recorded, ScoreWouldBeNegative, Recorded, Recorded]
    assert {u.user_id: u.score for u in await repository.load_period(KEY)} == {
        "good-1": 10,
        "good-2": 10,
        "good-3": 10,
    }


async def test_a_ticket_sent_twice_in_one_batch_counts_once(repository: ScoreRepository) -> None:
    """Guards the "first copy wins" check in ``ScoreRepository._write`` (``first[c.action_id]
    is c``): without it, copies of one ticket that land in the same batch all score. Over
    HTTP the first copy usually reaches an idle writer alone; here all four are queued
    before the writer runs, so they share one batch."""
    ticket = change("replayer")
    copies = [ticket, replace(ticket), change("bystander"), replace(ticket)]  # equal, not same
    outcomes = await asyncio.gather(*(repository.record(c) for c in copies), return_exceptions=True)
    assert [type(o) for o in outcomes] == [Recorded, ActionAlreadyUsed, Recorded, ActionAlreadyUsed]
    assert {u.user_id: u.score for u in await repository.load_period(KEY)} == {
        "replayer": 10,
        "bystander": 10,
    }


async def sqlite_repository(tmp_path: Path, max_batch: int) -> tuple[ScoreRepository, str]:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    repository = ScoreRepository(engine, await board_registry(engine), max_batch=max_batch)
    await repository.start()
    return repository, str(path)


async def test_a_full_queue_answers_503_at_once_and_a_lock_ends_in_503(tmp_path: Path) -> None:
    repository, path = await sqlite_repository(tmp_path, max_batch=1)  # queue holds 8
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        outcomes = await asyncio.gather(
            *(repository.record(change(f"u{i}")) for i in range(20)), return_exceptions=True
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes)
    details = {o.detail for o in outcomes if isinstance(o, ServiceUnavailable)}
    assert details == {
        "too many score updates are waiting; retry",
        "the score database is unavailable",
    }
    assert isinstance(await repository.record(change("after")), Recorded)  # and it recovers
    assert repository._waiting == 0  # the changes failed while queued no longer count
    await repository.stop()


async def test_a_write_waits_for_another_process_s_write_and_then_commits(
    tmp_path: Path,
) -> None:
    """The writer's transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE),
    so another process writing meanwhile (a CLI prune, a second tool) only makes it wait.
    Guards against a deferred BEGIN: the batch would read first, then find its snapshot
    stale when it came to write after the other commit, and fail (SQLITE_BUSY, a 503)."""
    repository, path = await sqlite_repository(tmp_path, max_batch=8)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE elsewhere (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO elsewhere VALUES (1)")
    try:
        pending = asyncio.ensure_future(repository.record(change("ann")))
        await asyncio.sleep(0.3)  # the writer is waiting for the lock
        assert not pending.done()
        other.execute("COMMIT")
        assert isinstance(await asyncio.wait_for(pending, 10), Recorded)
    finally:
        other.close()
        await repository.stop()
    assert [u.user_id for u in await repository.load_period(KEY)] == ["ann"]


async def test_callers_never_hang_when_the_writer_dies(tmp_path: Path) -> None:
    repository, path = await sqlite_repository(tmp_path, max_batch=2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    waiting = [asyncio.create_task(repository.record(change(f"w{i}"))) for i in range(5)]
    await asyncio.sleep(0.2)
    assert repository._task is not None
    repository._task.cancel()  # the writer dies mid-batch
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes)
    assert not repository.is_running
    with pytest.raises(ServiceUnavailable):
        await repository.record(change("late"))


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [("57P03", True), ("08006", True), ("53300", True), ("23505", False), ("22021", False)],
)
def test_database_errors_are_classified_by_sqlstate(sqlstate: str, unavailable: bool) -> None:
    error = DBAPIError("statement", {}, _Orig(sqlstate))
    assert is_unavailable(error) is unavailable


def test_integrity_errors_are_bugs_not_outages() -> None:
    assert not is_unavailable(IntegrityError("statement", {}, _Orig("23505")))
    assert is_unavailable(TimeoutError())
    assert is_unavailable(ConnectionRefusedError())


async def test_a_group_of_changes_lands_whole_in_one_transaction(database_url: str) -> None:
    """``record_many`` (a batch request) never splits across transactions: a group that would
    overflow the writer's batch opens the next one, and a group larger than ``max_batch``
    still commits whole."""
    engine = create_engine(database_url)
    await migrate(engine)
    metrics = Metrics()
    repository = ScoreRepository(engine, await board_registry(engine), max_batch=8, metrics=metrics)
    await repository.start()
    try:
        singles = [change(f"single-{i}") for i in range(6)]
        group = [change(f"group-{i}") for i in range(5)]
        alone, together = await asyncio.gather(  # all queued before the writer looks
            asyncio.gather(*(repository.record(c) for c in singles)),
            repository.record_many(group),
        )
        assert all(isinstance(o, Recorded) for o in [*alone, *together])
        assert _batches(metrics) == (2, 11)  # 6 singles, then the group of 5: not 8 + 3
        large = [change(f"large-{i}") for i in range(12)]
        assert all(isinstance(o, Recorded) for o in await repository.record_many(large))
        assert _batches(metrics) == (3, 23)
        copies = [large[0], change("fresh"), replace(large[0])]
        assert [type(o) for o in await repository.record_many(copies)] == [
            ActionAlreadyUsed,
            Recorded,
            ActionAlreadyUsed,
        ]
    finally:
        await repository.stop()
        await engine.dispose()


def _batches(metrics: Metrics) -> tuple[float | None, float | None]:
    """How many group commits there were, and how many changes they held in all."""
    found = samples(metrics.scrape().decode())
    return (
        value(found, "scoreboard_write_batch_size_count"),
        value(found, "scoreboard_write_batch_size_sum"),
    )


async def test_changes_whose_boards_are_all_gone_write_nothing_and_say_so(
    repository: ScoreRepository,
) -> None:
    """Changes with no board left to feed (retired after the tickets were checked) write
    nothing and say why, and the rest of their batch is written. Guards against the writer
    assuming a batch has an audit row (an unset accepted set: a TypeError), and against the
    refusal losing its detail or ending the batch's outcomes early."""

    def gone(user: str) -> ScoreChange:
        return replace(change(user), boards=("retired-board",))

    outcomes = await repository.record_many([gone("ann"), gone("ben")])  # no row at all
    assert [type(o) for o in outcomes] == [NoActiveBoard, NoActiveBoard]
    assert {o.detail for o in outcomes if isinstance(o, NoActiveBoard)} == {
        "none of the boards this action feeds is active"
    }
    outcomes = await repository.record_many([gone("dan"), change("cat")])
    assert [type(o) for o in outcomes] == [NoActiveBoard, Recorded]  # the batch goes on
    assert [u.user_id for u in await repository.load_period(KEY)] == ["cat"]


async def test_a_board_retired_since_the_check_is_skipped_and_the_others_are_fed(
    repository: ScoreRepository,
) -> None:
    """The writer looks at each board again in the change's own transaction: a board
    retired since the ticket was checked takes nothing, and the change's other boards still
    do. Guards against a retired board being written to, and against one gone board ending
    the look at the rest (a break for a continue)."""
    feeds_two = replace(change("ann"), boards=("retired-board", GLOBAL))
    assert isinstance(await repository.record(feeds_two), Recorded)
    assert [(u.user_id, u.score) for u in await repository.load_period(KEY)] == [("ann", 10)]
    await repository._boards.retire(GLOBAL)
    outcomes = await repository.record_many([change("ben")])
    assert [type(o) for o in outcomes] == [NoActiveBoard]
    assert [u.user_id for u in await repository.load_period(KEY)] == ["ann"]


async def test_the_queue_bound_counts_a_whole_group_and_stopping_refuses_groups(
    tmp_path: Path,
) -> None:
    """A group fits while what waits plus the group stays within the bound (8 here), and
    is refused whole beyond it; a stopped writer refuses a group with its own reason."""
    repository, path = await sqlite_repository(tmp_path, max_batch=1)  # queue holds 8
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer waits on the lock meanwhile
    try:
        taken = asyncio.ensure_future(repository.record_many([change("a")]))
        await asyncio.sleep(0.05)  # the writer holds it, stuck on the lock
        queued = asyncio.ensure_future(repository.record_many([change("x")]))
        await asyncio.sleep(0)
        fits = asyncio.ensure_future(repository.record_many([change(f"b{i}") for i in range(7)]))
        await asyncio.sleep(0)
        assert repository._waiting == 8  # 1 + 7: exactly the bound, taken
        with pytest.raises(ServiceUnavailable, match=r"^too many score updates are waiting"):
            await repository.record_many([change("c")])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    done = [*await taken, *await queued, *await fits]
    assert all(isinstance(o, Recorded) for o in done)
    await repository.stop()
    with pytest.raises(ServiceUnavailable, match=r"^the service is shutting down$"):
        await repository.record_many([change("late")])


async def test_an_admin_change_to_a_board_gone_since_it_was_checked_is_refused(
    repository: ScoreRepository,
) -> None:
    """The admin service checks the board, then the writer checks it again in the change's
    own transaction (a board retired in between). Guards against that refusal losing its
    detail, or naming a board the change does not have (an IndexError: a 500)."""
    note = AdminNote(admin_id="boss", action="adjust", reason="goodwill")
    gone = replace(change("ann"), boards=("retired-board",), admin=note)
    with pytest.raises(NoActiveBoard, match=r"^board 'retired-board' is no longer active$"):
        await repository.record(gone)
    assert await repository.load_period(KEY) == []


async def test_stopping_refuses_new_work_and_finishes_what_is_queued(database_url: str) -> None:
    """Guards ``stop``: it must refuse new changes at once (not queue them behind the stop,
    where they would fail later as "database unavailable"), write every change already
    queued, and wait for the writer to end; a writer never started stops without error."""
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        idle = ScoreRepository(engine, await board_registry(engine))
        await idle.stop()  # never started: nothing to wait for
        repository = ScoreRepository(engine, await board_registry(engine), max_batch=2)
        await repository.start()
        queued = [asyncio.ensure_future(repository.record(change(f"q{i}"))) for i in range(6)]
        await asyncio.sleep(0)  # all six queued, the writer not done with them
        stopping = asyncio.ensure_future(repository.stop())
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable, match="shutting down"):
            await repository.record(change("late"))
        await stopping
        assert all(isinstance(f.result(), Recorded) for f in queued)
        assert repository._task is not None
        assert repository._task.done()
        scores = {u.user_id: u.score for u in await repository.load_period(KEY)}
        assert scores == {f"q{i}": 10 for i in range(6)}
    finally:
        await engine.dispose()


async def test_loading_a_period_reads_that_board_and_period_only(
    repository: ScoreRepository, database_url: str
) -> None:
    """Guards ``load_period``'s two conditions: rows of another board in the same period, and
    of the same board in another period, are not the period's (a rebuild would rank them)."""
    await repository.record(change("ann"))
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            at = datetime.now(UTC)
            others = [("weekly", "all", "ben"), (GLOBAL, "2026-W49", "cat")]
            await conn.execute(
                insert(user_scores),
                [
                    {"board_id": b, "period_key": p, "user_id": u, "username": u, "score": 5}
                    | {"version": 1, "last_updated": at}
                    for b, p, u in others
                ],
            )
    finally:
        await engine.dispose()
    assert [u.user_id for u in await repository.load_period(KEY)] == ["ann"]
