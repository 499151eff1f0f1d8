"""The only code that writes scores: group-committed transactions over SQLAlchemy Core.

Concurrent updates queue up and share one transaction (group commit), so one fsync serves
many requests; each request still gets its own outcome, and none is acknowledged before the
commit returns. Per batch there are exactly two statements:

1. insert the audit rows, ``ON CONFLICT (action_id) DO NOTHING RETURNING action_id`` — the
   UNIQUE action id is what makes every ticket count at most once, across instances and
   restarts;
2. upsert the totals of the accepted rows into ``user_scores``.

Rows are written in key order so that batches of different instances lock in the same order
and cannot deadlock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scoreboard.database import is_unavailable
from scoreboard.errors import (
    ActionAlreadyUsed,
    ScoreboardError,
    ScoreWouldBeNegative,
    ServiceUnavailable,
)
from scoreboard.scores.models import Recorded, ScoreChange, UserScore
from scoreboard.tables import score_updates, user_scores

log = structlog.get_logger("scoreboard.scores")
Outcome = Recorded | BaseException
Pending = tuple[ScoreChange, "asyncio.Future[Recorded]"]


def _insert(engine: AsyncEngine, table: Any) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _user_score(row: Any) -> UserScore:
    return UserScore(
        user_id=row.user_id,
        username=row.username,
        score=row.score,
        version=row.version,
        last_updated=row.last_updated,
    )


class ScoreRepository:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256) -> None:
        self._engine = engine
        self._max_batch = max_batch
        # Bounded: under overload callers get a quick 503 instead of an ever longer wait.
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue(maxsize=max_batch * 8)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Built once: executed with a list of rows, SQLAlchemy's "insertmanyvalues" sends
        # them as multi-row INSERTs from a cached compiled statement.
        self._insert_audit = (
            _insert(engine, score_updates)
            .on_conflict_do_nothing(index_elements=["action_id"])
            .returning(score_updates.c.action_id)
        )
        upsert = _insert(engine, user_scores)
        self._upsert_scores = upsert.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                "username": upsert.excluded.username,
                "score": user_scores.c.score + upsert.excluded.score,
                "version": user_scores.c.version + upsert.excluded.version,
                "last_updated": upsert.excluded.last_updated,
            },
        ).returning(*user_scores.c)
        self._lower_score = (
            update(user_scores)
            .where(user_scores.c.user_id == bindparam("target"))
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
        if not self.is_running:
            raise ServiceUnavailable("the service is shutting down")
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((change, future))
        except asyncio.QueueFull:
            raise ServiceUnavailable("too many score updates are waiting; retry") from None
        return await asyncio.shield(future)

    async def _run(self) -> None:
        batch: list[Pending] = []
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                batch = [item]
                while len(batch) < self._max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is None:
                        self._queue.put_nowait(None)  # stop after this batch
                        break
                    batch.append(item)
                outcomes = await self._commit_batch([change for change, _ in batch])
                _settle(batch, outcomes)
                if any(isinstance(o, ServiceUnavailable) for o in outcomes):
                    self._fail_waiting()  # fail fast: do not make every queued batch time out
                batch = []
        finally:
            # Whatever stops the writer, nobody may wait forever for an answer.
            _settle(batch, [ServiceUnavailable("the score writer stopped") for _ in batch])
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                return
            _settle([item], [ServiceUnavailable("the score database is unavailable")])

    async def _commit_batch(self, changes: Sequence[ScoreChange]) -> list[Outcome]:
        try:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(sqlite_write=True)
                async with conn.begin():
                    return await self._write(conn, changes)
        except Exception as exc:
            if is_unavailable(exc):
                log.warning("score_write_unavailable", error=type(exc).__name__, batch=len(changes))
                return [ServiceUnavailable("the score database is unavailable") for _ in changes]
            if len(changes) > 1:
                # One bad change must not sink the others: commit each on its own.
                return [(await self._commit_batch([change]))[0] for change in changes]
            if isinstance(exc, ScoreboardError):
                return [exc]
            if isinstance(exc, IntegrityError):  # only a negative score can break a rule
                return [ScoreWouldBeNegative("a score cannot go below zero")]
            log.exception("score_write_failed", user=changes[0].user_id)
            return [ScoreboardError("the score could not be saved")]

    async def _write(self, conn: AsyncConnection, changes: Sequence[ScoreChange]) -> list[Outcome]:
        now = datetime.now(UTC)
        first: dict[str, ScoreChange] = {}
        for change in changes:
            first.setdefault(change.action_id, change)
        audit_rows = [
            {
                "id": str(uuid.uuid4()),
                "user_id": c.user_id,
                "action_id": c.action_id,
                "action_type": c.action_type,
                "score_change": c.points,
                "timestamp": c.timestamp,
                "recorded_at": now,
                "client_ip": c.client_ip,
            }
            for c in sorted(first.values(), key=lambda c: c.action_id)
        ]
        accepted = set((await conn.execute(self._insert_audit, audit_rows)).scalars())

        totals: dict[str, dict[str, Any]] = {}
        for c in changes:
            if c.action_id in accepted and first[c.action_id] is c:
                row = totals.setdefault(
                    c.user_id,
                    {"user_id": c.user_id, "score": 0, "version": 0, "last_updated": now},
                )
                row["username"] = c.username
                row["score"] += c.points
                row["version"] += 1
        committed: dict[str, UserScore] = {}
        gains = [totals[user] for user in sorted(totals) if totals[user]["score"] >= 0]
        if gains:
            result = await conn.execute(self._upsert_scores, gains)
            committed = {row.user_id: _user_score(row) for row in result}
        for user in sorted(u for u in totals if totals[u]["score"] < 0):
            # An insert of a negative row would trip the CHECK before ON CONFLICT could turn
            # it into an update: lowering a score is a plain UPDATE.
            total = totals[user]
            params = {
                "target": user,
                "delta": total["score"],
                "changes": total["version"],
                "at": total["last_updated"],
            }
            lowered = (await conn.execute(self._lower_score, params)).first()
            if lowered is None:
                raise ScoreWouldBeNegative(f"user {user} has no score to lower")
            committed[user] = _user_score(lowered)
        return _outcomes(changes, accepted, first, committed)

    async def load_all(self) -> list[UserScore]:
        async with self._engine.connect() as conn:
            result = await conn.stream(select(user_scores))
            return [_user_score(row) async for row in result]


def _settle(batch: Sequence[Pending], outcomes: Sequence[Outcome]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _outcomes(
    changes: Sequence[ScoreChange],
    accepted: set[str],
    first: dict[str, ScoreChange],
    committed: dict[str, UserScore],
) -> list[Outcome]:
    """Give each change its own result: later changes of the same user in the batch are
    subtracted, so every request sees the score right after its own update."""
    later_points: dict[str, int] = {}
    outcomes: list[Outcome] = []
    for change in reversed(changes):
        if change.action_id not in accepted or first[change.action_id] is not change:
            outcomes.append(ActionAlreadyUsed("this action was already completed"))
            continue
        user = committed[change.user_id]
        outcomes.append(
            Recorded(new_score=user.score - later_points.get(change.user_id, 0), user=user)
        )
        later_points[change.user_id] = later_points.get(change.user_id, 0) + change.points
    outcomes.reverse()
    return outcomes
