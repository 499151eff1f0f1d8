"""Closed periods past their board's ``keep_periods`` are pruned: their scores deleted from
the database and their ranking dropped from memory or Redis, so storage does not grow with
closed periods. Runs in the background on every instance (deleting twice is harmless) and
as ``scoreboard prune``.

Scores of a board the catalog no longer defines are left alone (a typo in the catalog file
must not delete a season) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from scoreboard.boards.repository import BoardRepository
from scoreboard.boards.service import BoardRegistry
from scoreboard.leaderboard.ranking import Ranking
from scoreboard.records import BoardPeriod

log = structlog.get_logger("scoreboard.archive")


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
        readable = {(key.board, key.period) for key in self._boards.readable_keys()}
        entries = {entry.id: entry for entry in self._boards.entries()}
        doomed: list[BoardPeriod] = []
        for board, period in await self._repository.stored_periods():
            entry = entries.get(board)
            if entry is None:
                if board not in self._orphans_reported:
                    self._orphans_reported.add(board)
                    log.warning("board_data_kept", board=board, reason="no such board defined")
                continue
            if (board, period) not in readable:
                doomed.append(entry.key(period))
        deleted = await self._repository.delete_periods([(k.board, k.period) for k in doomed])
        for key in doomed:
            await self._ranking.drop(key)
        if doomed:
            log.info(
                "periods_pruned",
                periods=[f"{k.board}/{k.period}" for k in doomed],
                scores=deleted,
            )
        return Pruned(doomed, deleted)

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
            await asyncio.sleep(self._interval)
