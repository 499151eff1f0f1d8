"""The only code that writes scores: group-committed transactions over SQLAlchemy Core.

Concurrent updates queue up and share one transaction (group commit), so one fsync serves
many requests; each request still gets its own outcome, and none is acknowledged before the
commit returns. Per batch:

1. lock the board revision FOR SHARE (reloading the boards if an admin changed them) and
   read the clock: every change lands in the period current at that instant, on every
   board it feeds;
2. insert the audit rows, ``ON CONFLICT (action_id[, issued_at]) DO NOTHING RETURNING
   action_id`` — the unique key is what makes every ticket count at most once, on all its
   boards, across instances and restarts. On SQLite it is the action id; on PostgreSQL,
   where score_updates is partitioned by month on the ticket's signed ``issued_at``, it is
   (action_id, issued_at): a replay carries the same signed issue time, so it meets its
   first copy in the same partition whatever month it arrives in. (Tickets old enough to
   have rows from before partitioning are looked up by action id as well; a batch whose
   month has no partition yet gets it and commits again: see ``_legacy_replays`` and
   ``_commit_batch``);
3. upsert the accepted rows into ``user_scores``, one statement per kind of board (points
   add up, the best value stays, the latest value replaces).

Rows are written in key order so that batches of different instances lock in the same order
and cannot deadlock. A group of changes (``record_many``: one batch request) is queued as one
entry and always lands whole in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scoreboard.abuse.repository import write_admin_audit
from scoreboard.audit_partitions import MAX_CLOCK_SKEW, ensure_months, may_lack_partition
from scoreboard.boards.periods import Period
from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.rules import Operator
from scoreboard.boards.service import BoardEntry, BoardRegistry
from scoreboard.database import is_unavailable, upsert_into
from scoreboard.errors import (
    ActionAlreadyUsed,
    NoActiveBoard,
    NotFound,
    ScoreboardError,
    ScoreWouldBeNegative,
    ServiceUnavailable,
)
from scoreboard.metrics import Metrics
from scoreboard.records import BoardPeriod, Order, UserScore
from scoreboard.scores.models import BoardScore, Recorded, ScoreChange
from scoreboard.tables import score_updates, score_updates_legacy, user_scores

log = structlog.get_logger("scoreboard.scores")
Outcome = Recorded | BaseException


@dataclass(frozen=True, slots=True)
class Pending:
    """Changes queued together, and where their outcomes go (in the same order)."""

    changes: Sequence[ScoreChange]
    future: asyncio.Future[list[Outcome]]


Target = tuple[BoardEntry, Period]
RowKey = tuple[str, str, str]  # board, period, user
KNOWN_PERIODS_CAP = 10_000
_UNREAD = datetime.min.replace(tzinfo=UTC)


def issued_at(change: ScoreChange) -> datetime:
    """The audit row's partition key: the ticket's signed issue time. A change without a
    ticket (an admin's) uses its own time; either way a replay of a change repeats it."""
    return change.issued_at if change.issued_at is not None else change.timestamp


def _user_score(row: Any) -> UserScore:
    return UserScore(
        user_id=row.user_id,
        username=row.username,
        score=row.score,
        version=row.version,
        last_updated=row.last_updated,
    )


# Which upsert a board's rows go through.
SUM, LATEST, BEST_DESC, BEST_ASC = "sum", "latest", "best-desc", "best-asc"
KINDS = (SUM, LATEST, BEST_DESC, BEST_ASC)


def _kind(entry: BoardEntry) -> str:
    board = entry.board
    if board.operator is Operator.BEST:
        return BEST_DESC if board.order is Order.DESC else BEST_ASC
    return SUM if board.operator is Operator.SUM else LATEST


def _upsert(engine: AsyncEngine, kind: str) -> Any:
    statement = upsert_into(engine, user_scores)
    new, old = statement.excluded, user_scores.c
    if kind == SUM:
        changes: dict[str, Any] = {
            "username": new.username,
            "score": old.score + new.score,
            "version": old.version + new.version,
            "last_updated": new.last_updated,
        }
    else:
        # Only a better (best) value, or (latest) a value from a run issued after the one
        # stored, changes the row, its version and the time it was reached: an equal score
        # keeps whoever reached it first. Completing tickets out of order picks nothing.
        newer = or_(old.value_at.is_(None), new.value_at > old.value_at)
        changed = {
            BEST_DESC: new.score > old.score,
            BEST_ASC: new.score < old.score,
            LATEST: and_(newer, new.score != old.score),
        }[kind]
        changes = {
            "username": case((changed, new.username), else_=old.username),
            "score": case((changed, new.score), else_=old.score),
            "version": old.version + case((changed, 1), else_=0),
            "last_updated": case((changed, new.last_updated), else_=old.last_updated),
        }
        if kind == LATEST:
            changes["value_at"] = case((newer, new.value_at), else_=old.value_at)
    return statement.on_conflict_do_update(
        index_elements=["board_id", "period_key", "user_id"], set_=changes
    ).returning(*user_scores.c)


def _fold(kind: str, current: int | None, change: ScoreChange) -> int:
    """A batch's changes of one user on a sum or best board, combined as the board combines
    them (in any order: the result is the same). Latest boards are not folded: their
    changes are upserted one after the other, as they arrived."""
    if kind == SUM:
        return (current or 0) + change.points
    assert change.value is not None
    if current is None:
        return change.value
    return max(current, change.value) if kind == BEST_DESC else min(current, change.value)


class ScoreRepository:
    def __init__(
        self,
        engine: AsyncEngine,
        boards: BoardRegistry,
        *,
        max_batch: int = 256,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._engine = engine
        self._boards = boards
        self._max_batch = max_batch
        # Bounded (in changes): under overload callers get a quick 503 instead of an ever
        # longer wait.
        self._capacity = max_batch * 8
        self._waiting = 0  # changes queued, not yet taken into a batch
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._known_periods: set[tuple[str, str]] = set()
        self._partitioned = engine.dialect.name == "postgresql"
        self._legacy_before: datetime | None = _UNREAD  # read once (PostgreSQL)
        # Built once: executed with a list of rows, SQLAlchemy's "insertmanyvalues" sends
        # them as multi-row INSERTs from a cached compiled statement.
        unique_key = ["action_id", "issued_at"] if self._partitioned else ["action_id"]
        self._insert_audit = (
            upsert_into(engine, score_updates)
            .on_conflict_do_nothing(index_elements=unique_key)
            .returning(score_updates.c.action_id)
        )
        self._upserts = {kind: _upsert(engine, kind) for kind in KINDS}
        self._lower_score = (
            update(user_scores)
            .where(
                user_scores.c.board_id == bindparam("target_board"),
                user_scores.c.period_key == bindparam("target_period"),
                user_scores.c.user_id == bindparam("target_user"),
            )
            .values(
                score=user_scores.c.score + bindparam("delta"),
                version=user_scores.c.version + bindparam("changes"),
                last_updated=bindparam("at"),
            )
            .returning(*user_scores.c)
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="score-writer")

    async def stop(self) -> None:
        """Refuse new work, finish what is queued, then stop the writer."""
        self._closing = True
        if self._task and not self._task.done():
            await self._queue.put(None)
            await self._task

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    async def record(self, change: ScoreChange) -> Recorded:
        """Write one change (group-committed with whatever else is waiting); raises its
        refusal."""
        [outcome] = await self.record_many([change])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def record_many(self, changes: Sequence[ScoreChange]) -> list[Outcome]:
        """Write changes in one transaction (shared with whatever else is waiting): each
        change's outcome, in order, a refusal as a value. Raises ServiceUnavailable when
        the writer is stopping or too much is queued."""
        if not self.is_running:
            raise ServiceUnavailable("the service is shutting down")
        if not changes:
            return []
        # An empty queue takes any group: a group larger than the bound must still fit once.
        if self._waiting and self._waiting + len(changes) > self._capacity:
            raise ServiceUnavailable("too many score updates are waiting; retry")
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(changes, future))
        self._waiting += len(changes)
        self._metrics.queue_depth.set(self._waiting)
        return await asyncio.shield(future)

    async def _run(self) -> None:
        batch: list[Pending] = []
        carry: Pending | None = None  # taken from the queue, but too big for the last batch
        try:
            while True:
                item = carry or await self._queue.get()
                carry = None
                if item is None:
                    return
                batch, size = [item], len(item.changes)
                while size < self._max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is None:
                        self._queue.put_nowait(None)  # stop after this batch
                        break
                    if size + len(item.changes) > self._max_batch:
                        carry = item  # a group never splits: it opens the next batch
                        break
                    batch.append(item)
                    size += len(item.changes)
                self._waiting -= size
                self._metrics.queue_depth.set(self._waiting)
                self._metrics.batch_size.observe(size)
                changes = [change for pending in batch for change in pending.changes]
                outcomes = await self._commit_in_turn(changes)
                _settle(batch, outcomes)
                batch = []
                if any(isinstance(o, ServiceUnavailable) for o in outcomes):
                    if carry is not None:  # fail fast: do not make every queued batch time out
                        _fail([carry], "the score database is unavailable")
                        self._waiting -= len(carry.changes)
                        carry = None
                    self._fail_waiting()
        finally:
            # Whatever stops the writer, nobody may wait forever for an answer.
            _fail([*batch, *([carry] if carry else [])], "the score writer stopped")
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                break
            self._waiting -= len(item.changes)
            _fail([item], "the score database is unavailable")
        self._metrics.queue_depth.set(self._waiting)

    async def _commit_in_turn(self, changes: Sequence[ScoreChange]) -> list[Outcome]:
        """Players' changes share one transaction; each admin change (rare) has its own,
        after them."""
        outcomes: list[Outcome | None] = [None] * len(changes)
        shared = [i for i, change in enumerate(changes) if change.admin is None]
        if shared:
            committed = await self._commit_batch([changes[i] for i in shared])
            for i, outcome in zip(shared, committed, strict=True):
                outcomes[i] = outcome
        for i, change in enumerate(changes):
            if change.admin is not None:
                outcomes[i] = (await self._commit_batch([change]))[0]
        return [outcome for outcome in outcomes if outcome is not None]

    async def _commit_batch(
        self, changes: Sequence[ScoreChange], *, retried: bool = False
    ) -> list[Outcome]:
        try:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(sqlite_write=True)
                async with conn.begin():
                    if len(changes) == 1 and changes[0].admin is not None:
                        outcomes, noted = await self._write_admin(conn, changes[0])
                    else:
                        outcomes, noted = await self._write(conn, changes)
            # Only once committed: a rolled-back batch must note its periods again.
            if len(self._known_periods) > KNOWN_PERIODS_CAP:
                self._known_periods.clear()
            self._known_periods |= noted
            return outcomes
        except Exception as exc:
            if not retried and self._partitioned and may_lack_partition(exc):
                # The month may have no partition yet (upkeep keeps them months ahead; it
                # did not run): make sure it has, then commit the same batch again.
                try:
                    await ensure_months(self._engine, [issued_at(c) for c in changes])
                except Exception as ddl_error:
                    log.warning("audit_partition_not_created", error=type(ddl_error).__name__)
                    exc = ddl_error
                else:
                    return await self._commit_batch(changes, retried=True)
            if is_unavailable(exc):
                log.warning("score_write_unavailable", error=type(exc).__name__, batch=len(changes))
                return [ServiceUnavailable("the score database is unavailable") for _ in changes]
            if len(changes) > 1:
                # One bad change must not sink the others: commit each on its own.
                return [
                    (await self._commit_batch([change], retried=retried))[0] for change in changes
                ]
            if isinstance(exc, ScoreboardError):
                return [exc]
            if isinstance(exc, IntegrityError) and "score_positive" in str(exc.orig):
                return [ScoreWouldBeNegative("a score cannot go below zero")]
            log.exception("score_write_failed", user=changes[0].user_id)
            return [ScoreboardError("the score could not be saved")]

    def _targets(self, change: ScoreChange, now: datetime) -> list[Target]:
        """The active boards a change feeds, each in its period at ``now``."""
        targets: list[Target] = []
        for board_id in change.boards:
            try:
                entry = self._boards.entry(board_id)
            except ScoreboardError:  # the board is gone since the ticket was checked
                continue
            if entry.active and (change.value is not None or not entry.board.operator.takes_value):
                targets.append((entry, self._boards.current(entry, now)))
        return targets

    async def _write(
        self, conn: AsyncConnection, changes: Sequence[ScoreChange]
    ) -> tuple[list[Outcome], set[tuple[str, str]]]:
        """The batch's statements; returns each change's outcome and the periods it noted."""
        await self._boards.sync(conn)
        now = self._boards.clock()  # after the lock: a rollover is before or after all of it
        first: dict[str, ScoreChange] = {}
        targets: dict[str, list[Target]] = {}
        for change in changes:
            if change.action_id not in first:
                first[change.action_id] = change
                targets[change.action_id] = self._targets(change, now)
        writable = [c for c in first.values() if targets[c.action_id]]
        used = await self._legacy_replays(conn, writable)
        writable = [c for c in writable if c.action_id not in used]
        audit_rows = [
            {
                "id": str(uuid.uuid4()),
                "user_id": c.user_id,
                "action_id": c.action_id,
                "action_type": c.action_type,
                "score_change": c.points,
                "value": c.value,
                "boards": json.dumps(
                    {entry.id: period.key for entry, period in targets[c.action_id]},
                    separators=(",", ":"),
                ),
                "timestamp": c.timestamp,
                "recorded_at": now,
                "client_ip": c.client_ip,
                "issued_at": issued_at(c),
            }
            for c in sorted(writable, key=lambda c: c.action_id)
        ]
        accepted: set[str] = set()
        if audit_rows:
            accepted = set((await conn.execute(self._insert_audit, audit_rows)).scalars())
        kept = [c for c in changes if c.action_id in accepted and first[c.action_id] is c]
        names = await self._names(conn, kept, targets)

        # Per kind, rounds of rows with one row per user and board: sum and best changes fold
        # into the first round; each further latest change of the same row opens a round of
        # its own, so they apply one after another, as if committed one by one.
        rounds: list[tuple[str, dict[RowKey, dict[str, Any]]]] = []
        periods: set[tuple[str, str]] = set()
        for c in changes:
            if c.action_id not in accepted or first[c.action_id] is not c:
                continue
            for entry, period in targets[c.action_id]:
                kind, row_key = _kind(entry), (entry.id, period.key, c.user_id)
                rows = next(
                    (
                        rows
                        for k, rows in rounds
                        if k == kind and (kind != LATEST or row_key not in rows)
                    ),
                    None,
                )
                if rows is None:
                    rows = {}
                    rounds.append((kind, rows))
                row = rows.setdefault(
                    row_key,
                    {
                        "board_id": entry.id,
                        "period_key": period.key,
                        "user_id": c.user_id,
                        "score": None,
                        "version": 0,
                        "last_updated": now,
                        "value_at": c.issued_at,
                    },
                )
                row["username"] = names[c.user_id]
                row["score"] = c.value if kind == LATEST else _fold(kind, row["score"], c)
                row["version"] += 1 if kind == SUM else 0
                periods.add((entry.id, period.key))
        committed = await self._upsert_rows(conn, rounds)
        new_periods = periods - self._known_periods
        await BoardRepository.note_periods(conn, sorted(new_periods), now)
        return _outcomes(changes, accepted, first, targets, committed), new_periods

    async def _legacy_replays(
        self, conn: AsyncConnection, changes: Sequence[ScoreChange]
    ) -> set[str]:
        """The action ids of these changes that a row from before partitioning already used
        (PostgreSQL). Such a row's issued_at is its recorded_at, not its ticket's, so the
        unique key would not meet the replay: the tickets issued before the upgrade's horizon
        (alive a ticket's lifetime after it at most) are looked up by action id, in the
        months their row can be in: from the ticket's issue time (a row's recorded_at is
        never earlier, give or take the instances' clocks) to the horizon. Those rows are
        never written again, so there is no race to lose."""
        if not self._partitioned or not changes:
            return set()
        if self._legacy_before is _UNREAD:
            self._legacy_before = await conn.scalar(select(score_updates_legacy.c.issued_before))
        horizon = self._legacy_before
        if horizon is None:
            return set()
        old = [c for c in changes if issued_at(c) < horizon]
        if not old:
            return set()
        earliest = min(issued_at(c) for c in old)
        found = await conn.execute(
            select(score_updates.c.action_id).where(
                score_updates.c.action_id.in_([c.action_id for c in old]),
                score_updates.c.issued_at >= earliest - MAX_CLOCK_SKEW,
                score_updates.c.issued_at < horizon,
            )
        )
        return set(found.scalars())

    async def _names(
        self,
        conn: AsyncConnection,
        changes: Sequence[ScoreChange],
        targets: dict[str, list[Target]],
    ) -> dict[str, str]:
        """The name each user's rows get: the one a change of the batch brings (the last),
        else the one stored on a board the batch writes (the latest), else the user id."""
        names = {c.user_id: c.username for c in changes if c.username is not None}
        unnamed = {c.user_id for c in changes} - set(names)
        if unnamed:
            fed = [
                target for c in changes if c.user_id in unnamed for target in targets[c.action_id]
            ]
            stored = await conn.execute(
                select(user_scores.c.user_id, user_scores.c.username)
                .where(
                    user_scores.c.board_id.in_({entry.id for entry, _ in fed}),
                    user_scores.c.period_key.in_({period.key for _, period in fed}),
                    user_scores.c.user_id.in_(unnamed),
                )
                .order_by(user_scores.c.last_updated)
            )
            names |= {user: username for user, username in stored}
        return {c.user_id: names.get(c.user_id, c.user_id) for c in changes}

    async def _write_admin(
        self, conn: AsyncConnection, change: ScoreChange
    ) -> tuple[list[Outcome], set[tuple[str, str]]]:
        """An admin's adjust or reset of one sum board, its score_updates row and its
        admin_audit row: all of it commits, or none. A reset locks the row and lowers it by
        exactly what it holds, so concurrent updates can only come before or after it."""
        assert change.admin is not None
        await self._boards.sync(conn)
        now = self._boards.clock()
        targets = self._targets(change, now)
        if not targets:
            raise NoActiveBoard(f"board '{change.boards[0]}' is no longer active")
        [(entry, period)] = targets
        row_key = (entry.id, period.key, change.user_id)
        delta, details = change.points, dict[str, Any](points=change.points)
        if change.admin.action == "reset":
            held = await conn.scalar(
                select(user_scores.c.score)
                .where(
                    user_scores.c.board_id == entry.id,
                    user_scores.c.period_key == period.key,
                    user_scores.c.user_id == change.user_id,
                )
                .with_for_update()
            )
            if held is None:
                raise NotFound(f"user {change.user_id} has no score on board '{entry.id}'")
            delta, details = -held, dict[str, Any](previousScore=held)
        row = {
            "board_id": entry.id,
            "period_key": period.key,
            "user_id": change.user_id,
            "username": change.username or change.user_id,
            "score": delta,
            "version": 1,
            "last_updated": now,
            "value_at": None,
        }
        user = (await self._upsert_rows(conn, [(SUM, {row_key: row})]))[row_key]
        await conn.execute(
            self._insert_audit,
            [
                {
                    "id": str(uuid.uuid4()),
                    "user_id": change.user_id,
                    "action_id": change.action_id,
                    "action_type": change.action_type,
                    "score_change": delta,
                    "value": None,
                    "boards": json.dumps({entry.id: period.key}, separators=(",", ":")),
                    "timestamp": change.timestamp,
                    "recorded_at": now,
                    "client_ip": None,
                    "issued_at": issued_at(change),
                }
            ],
        )
        details |= {"newScore": user.score, "board": entry.id, "period": period.key}
        await write_admin_audit(conn, change.admin, change.user_id, details)
        new_periods = {(entry.id, period.key)} - self._known_periods
        await BoardRepository.note_periods(conn, sorted(new_periods), now)
        return [Recorded((BoardScore(entry.key(period), user.score, user),))], new_periods

    async def _upsert_rows(
        self, conn: AsyncConnection, rounds: list[tuple[str, dict[RowKey, dict[str, Any]]]]
    ) -> dict[RowKey, UserScore]:
        committed: dict[RowKey, UserScore] = {}
        # In kind order, then key order: batches of different instances take their row locks
        # in the same order and cannot deadlock (the sort is stable: latest rounds stay in
        # the order their changes arrived).
        for kind, by_key in sorted(rounds, key=lambda round_: round_[0]):
            if kind != SUM:
                for row in by_key.values():
                    row["version"] = 1  # a new row's version; "+1 if it changed" otherwise
            ordered = [by_key[key] for key in sorted(by_key)]
            gains = [row for row in ordered if row["score"] >= 0]
            if gains:
                result = await conn.execute(self._upserts[kind], gains)
                committed |= {
                    (row.board_id, row.period_key, row.user_id): _user_score(row) for row in result
                }
            for row in (row for row in ordered if row["score"] < 0):
                # An insert of a negative row would trip the CHECK before ON CONFLICT could
                # turn it into an update: lowering a score is a plain UPDATE (sum boards).
                params = {
                    "target_board": row["board_id"],
                    "target_period": row["period_key"],
                    "target_user": row["user_id"],
                    "delta": row["score"],
                    "changes": row["version"],
                    "at": row["last_updated"],
                }
                lowered = (await conn.execute(self._lower_score, params)).first()
                if lowered is None:
                    raise ScoreWouldBeNegative(f"user {row['user_id']} has no score to lower")
                committed[(row["board_id"], row["period_key"], row["user_id"])] = _user_score(
                    lowered
                )
        return committed

    async def load_period(self, key: BoardPeriod) -> list[UserScore]:
        query = select(user_scores).where(
            and_(user_scores.c.board_id == key.board, user_scores.c.period_key == key.period)
        )
        async with self._engine.connect() as conn:
            result = await conn.stream(query)
            return [_user_score(row) async for row in result]


def _settle(batch: Sequence[Pending], outcomes: Sequence[Outcome]) -> None:
    """Hand each group its outcomes (``outcomes`` holds the batch's changes in order)."""
    assert len(outcomes) == sum(len(pending.changes) for pending in batch)
    start = 0
    for pending in batch:
        end = start + len(pending.changes)
        if not pending.future.done():
            pending.future.set_result(list(outcomes[start:end]))
        start = end


def _fail(batch: Sequence[Pending], detail: str) -> None:
    _settle(batch, [ServiceUnavailable(detail) for p in batch for _ in p.changes])


def _outcomes(
    changes: Sequence[ScoreChange],
    accepted: set[str],
    first: dict[str, ScoreChange],
    targets: dict[str, list[Target]],
    committed: dict[RowKey, UserScore],
) -> list[Outcome]:
    """Give each change its own result on each board. On sum boards later changes of the same
    user in the batch are subtracted, so every request sees the score right after its own
    update; best and latest boards show the score after the batch."""
    later_points: dict[RowKey, int] = {}
    outcomes: list[Outcome] = []
    for change in reversed(changes):
        if not targets[change.action_id]:
            outcomes.append(NoActiveBoard("none of the boards this action feeds is active"))
            continue
        if change.action_id not in accepted or first[change.action_id] is not change:
            outcomes.append(ActionAlreadyUsed("this action was already completed"))
            continue
        results: list[BoardScore] = []
        for entry, period in targets[change.action_id]:
            row_key = (entry.id, period.key, change.user_id)
            user = committed[row_key]
            kind = _kind(entry)
            if kind == SUM:
                new_score = user.score - later_points.get(row_key, 0)
                later_points[row_key] = later_points.get(row_key, 0) + change.points
            else:
                new_score = user.score
            results.append(BoardScore(entry.key(period), new_score, user))
        outcomes.append(Recorded(tuple(results)))
    outcomes.reverse()
    return outcomes
