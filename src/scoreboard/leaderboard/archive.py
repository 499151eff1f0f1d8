"""Closed periods past their board's ``keep_periods`` are pruned: their scores deleted from
the database and their ranking dropped from memory or Redis, so storage does not grow with
closed periods. Runs in the background on every instance (deleting twice is harmless) and
as ``scoreboard prune``.

The background loop also keeps the audit log's monthly partitions (PostgreSQL) created
``MONTHS_AHEAD`` months ahead of the clock (scoreboard.audit_partitions): one more round of
upkeep per interval, on every instance (creating what exists is a no-op).

Scores of a board the catalog no longer defines are left alone (a typo in the catalog file
must not delete a season) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

import structlog

from scoreboard.audit_partitions import ensure_partitions
from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.service import BoardRegistry
from scoreboard.leaderboard.ranking import Ranking
from scoreboard.records import BoardPeriod

log = structlog.get_logger("scoreboard.archive")
FUTURE_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Pruned:
    periods: list[BoardPeriod]
    scores: int


class PeriodPruner:
    def __init__(
        self,
        boards: BoardRegistry,
        repository: BoardRepository,
        ranking: Ranking,
        interval: float,
    ) -> None:
        self._boards = boards
        self._repository = repository
        self._ranking = ranking
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._orphans_reported: set[str] = set()

    async def prune(self) -> Pruned:
        # Decide on the newest boards (a rollover elsewhere makes a new current period), and
        # delete only while they stay so (BoardRepository.delete_periods).
        await self._boards.refresh()
        revision = self._boards.revision
        # A period that began by a clock a little ahead of ours is not to be pruned either.
        readable = {
            (key.board, key.period)
            for at in (None, self._boards.clock() + FUTURE_MARGIN)
            for key in self._boards.readable_keys(at)
        }
        entries = {entry.id: entry for entry in self._boards.entries()}
        doomed: list[tuple[str, str]] = []
        for board, period in await self._repository.stored_periods():
            if board not in entries:
                if board not in self._orphans_reported:
                    self._orphans_reported.add(board)
                    log.warning("board_data_kept", board=board, reason="no such board defined")
                continue
            if (board, period) not in readable:
                doomed.append((board, period))
        done, deleted = await self._repository.delete_periods(doomed, revision)
        pruned = [entries[board].key(period) for board, period in done]
        for key in pruned:
            await self._ranking.drop(key)
        if pruned:
            log.info(
                "periods_pruned",
                periods=[f"{k.board}/{k.period}" for k in pruned],
                scores=deleted,
            )
        return Pruned(pruned, deleted)

    async def keep_audit_partitions(self) -> list[str]:
        """Create the audit log's partitions of this month and the next few where missing;
        the names created (none on SQLite)."""
        return await ensure_partitions(self._repository.engine, self._boards.clock())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="period-pruner")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:  # the database or Redis may be away: next time
                log.warning("prune_failed", error=type(exc).__name__)
            try:
                await self.keep_audit_partitions()
            except Exception as exc:  # away, or a lock held too long: next time
                log.warning("audit_partitions_failed", error=type(exc).__name__)
            await asyncio.sleep(self._interval)
