"""The boards in force: the catalog file's merged with those defined at runtime, which boards
each action type feeds, their periods, and the admin changes (define, retire, roll over).

Every board change bumps one revision row in the database while holding its lock; score
writes read that row FOR SHARE and reload the boards when it moved. So a rollover and the
writes around it are ordered by the database: a write that commits after the rollover lands
in the new period on every instance, with no job having to run on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from scoreboard.boards.periods import MICROSECOND, Period, Timeline
from scoreboard.boards.repository import BoardRepository, StoredBoards
from scoreboard.boards.rules import Board
from scoreboard.clock import Clock
from scoreboard.errors import BoardConflict, BoardNotFound, InvalidBoard, PeriodNotFound
from scoreboard.records import BoardPeriod

log = structlog.get_logger("scoreboard.boards")
Source = Literal["file", "admin"]
MAX_BOARDS = 200  # file and runtime boards together: each costs a live feed and cache keys
MAX_FEEDS_PER_TYPE = 10  # boards one completion may feed: each is a write and a ranking
REFRESH_INTERVAL = 5.0  # seconds; changes made on other instances also arrive as events


class BoardDefinitionError(ValueError):
    """The boards in the database cannot be merged with the catalog file's."""


@dataclass(frozen=True, slots=True)
class BoardEntry:
    board: Board
    source: Source
    actions: tuple[str, ...]  # the action types feeding it
    retired_at: datetime | None
    timeline: Timeline

    @property
    def id(self) -> str:
        return self.board.id

    @property
    def active(self) -> bool:
        return self.retired_at is None

    def key(self, period: Period | str) -> BoardPeriod:
        name = period if isinstance(period, str) else period.key
        return BoardPeriod(self.board.id, name, self.board.order)


@dataclass(slots=True)
class BoardSet:
    revision: int
    entries: dict[str, BoardEntry]
    feeds: dict[str, tuple[BoardEntry, ...]]
    # Per board: its current period, and (current key, readable periods). One entry per
    # board, carried into the next set for boards a change did not touch.
    _current: dict[str, Period] = field(default_factory=dict)
    _readable: dict[str, tuple[str, list[Period]]] = field(default_factory=dict)


class BoardRegistry:
    def __init__(
        self,
        catalog_boards: Mapping[str, Board],
        catalog_feeds: Mapping[str, tuple[str, ...]],
        repository: BoardRepository,
        clock: Clock,
    ) -> None:
        self._file_boards = dict(catalog_boards)
        self._file_feeds = dict(catalog_feeds)
        self._repository = repository
        self.clock = clock
        self._state = self._build(StoredBoards(0, {}, {}))
        self._task: asyncio.Task[None] | None = None

    # -- loading ---------------------------------------------------------------------------

    async def start(self, *, refresh: bool = True) -> None:
        self._state = self._build(await self._repository.load_now())
        if refresh:
            self._task = asyncio.create_task(self._refresh_loop(), name="board-refresh")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        """Reload when another instance (or an admin here) changed the boards."""
        self._install(await self._repository.load_now())

    async def sync(self, conn: AsyncConnection) -> None:
        """Inside a score write: lock the board revision for the transaction and reload the
        boards on this connection if they changed."""
        revision = await self._repository.revision(conn, share=True)
        if revision != self._state.revision:
            self._install(await self._repository.load(conn))

    def _install(self, stored: StoredBoards) -> None:
        # Only forward: a slow reload that read an older revision must not undo a newer one.
        if stored.revision > self._state.revision:
            self._state = self._build(stored, self._state)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be away: the boards stay as they are
                log.warning("boards_not_refreshed", error=type(exc).__name__)

    def _build(self, stored: StoredBoards, previous: BoardSet | None = None) -> BoardSet:
        entries: dict[str, BoardEntry] = {}
        for board in self._file_boards.values():
            row = stored.boards.get(board.id)
            if row is not None and row.definition is not None:
                runtime = _runtime_board(row.id, row.definition)
                if not runtime.same_rules(board):
                    raise BoardDefinitionError(
                        f"board '{board.id}' is defined in the actions file and, with other "
                        "rules, at runtime (PUT /api/admin/boards): rename one of them"
                    )
            entries[board.id] = self._entry(board, "file", stored, row.retired_at if row else None)
        for row in stored.boards.values():
            if row.definition is None or row.id in entries:
                continue
            entries[row.id] = self._entry(
                _runtime_board(row.id, row.definition),
                "admin",
                stored,
                row.retired_at,
                tuple(row.definition.get("actions", ())),
            )
        feeds = {
            action: tuple(
                entries[board] for board in boards if board in entries and entries[board].active
            )
            for action, boards in self._file_feeds.items()
        }
        for entry in sorted(entries.values(), key=lambda e: e.id):
            if entry.source == "admin" and entry.active:
                for action in entry.actions:
                    if action in feeds and entry not in feeds[action]:
                        feeds[action] += (entry,)
        built = BoardSet(stored.revision, entries, feeds)
        if previous is not None:  # what a change did not touch need not be worked out again
            for board_id, entry in entries.items():
                before = previous.entries.get(board_id)
                if before is None or (before.timeline, before.retired_at) != (
                    entry.timeline,
                    entry.retired_at,
                ):
                    continue
                if board_id in previous._current:
                    built._current[board_id] = previous._current[board_id]
                if board_id in previous._readable:
                    built._readable[board_id] = previous._readable[board_id]
        return built

    def _entry(
        self,
        board: Board,
        source: Source,
        stored: StoredBoards,
        retired_at: datetime | None,
        runtime_actions: tuple[str, ...] = (),
    ) -> BoardEntry:
        actions = runtime_actions or tuple(
            action for action, boards in self._file_feeds.items() if board.id in boards
        )
        timeline = Timeline(board, stored.rollovers.get(board.id, ()))
        return BoardEntry(board, source, actions, retired_at, timeline)

    # -- reading ---------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._state.revision

    def entries(self) -> list[BoardEntry]:
        return list(self._state.entries.values())

    def entry(self, board_id: str) -> BoardEntry:
        entry = self._state.entries.get(board_id)
        if entry is None:
            raise BoardNotFound(f"there is no board '{board_id}'")
        return entry

    def feeds(self, action_type: str) -> tuple[BoardEntry, ...]:
        return self._state.feeds.get(action_type, ())

    def current(self, entry: BoardEntry, at: datetime | None = None) -> Period:
        """The period ``at`` (default now) falls in: cached until it ends. Never before the
        board's last rollover: a clock a little behind the one that cut it must not put
        anything in the closed period."""
        at = at or self.clock()
        if entry.timeline.rollovers:
            at = max(at, entry.timeline.rollovers[-1])
        state = self._state
        cached = state._current.get(entry.id)
        if cached is None or not cached.contains(at):
            cached = state._current[entry.id] = entry.timeline.at(at)
        return cached

    def readable(self, entry: BoardEntry) -> list[Period]:
        """Newest first: the current period (active boards) and the closed ones kept."""
        memo = self._state._readable
        known = memo.get(entry.id)
        if not entry.active:
            assert entry.retired_at is not None
            if known is None:
                last = entry.retired_at - MICROSECOND
                known = memo[entry.id] = ("", entry.timeline.recent(last, entry.board.keep_periods))
            return known[1]
        current = self.current(entry)
        if known is not None and known[0] == current.key:
            return known[1]
        count = entry.board.keep_periods + 1
        if known is not None and known[1] and entry.timeline.before(current) == known[1][0]:
            # The usual step: one period ended and the next began. Shift, do not recompute
            # (up to keep_periods schedule steps).
            periods = [current, *known[1]][:count]
        else:
            periods = entry.timeline.recent(current.start or self.clock(), count)
        memo[entry.id] = (current.key, periods)
        return periods

    def current_keys(self) -> set[BoardPeriod]:
        """The current period of every active board: the ones still taking scores."""
        return {
            entry.key(self.current(entry)) for entry in self._state.entries.values() if entry.active
        }

    def readable_keys(self, at: datetime | None = None) -> set[BoardPeriod]:
        """Every board period readable now (or, with ``at``, the current ones at ``at`` too)."""
        keys = {
            entry.key(p) for entry in self._state.entries.values() for p in self.readable(entry)
        }
        if at is not None:
            keys |= {
                entry.key(entry.timeline.at(at))
                for entry in self._state.entries.values()
                if entry.active
            }
        return keys

    def resolve(self, board_id: str, period: str = "current") -> tuple[BoardEntry, Period]:
        entry = self.entry(board_id)
        readable = self.readable(entry)
        if period == "current":
            if not entry.active:
                raise PeriodNotFound(
                    f"board '{board_id}' was retired; read period=previous or a period key"
                )
            return entry, readable[0]
        if period == "previous":
            closed = readable[1:] if entry.active else readable
            if not closed:
                raise PeriodNotFound(f"board '{board_id}' keeps no closed period")
            return entry, closed[0]
        for candidate in readable:
            if candidate.key == period:
                return entry, candidate
        raise PeriodNotFound(
            f"board '{board_id}' has no readable period '{period}'",
            extra={"readablePeriods": [p.key for p in readable]},
        )

    # -- changing --------------------------------------------------------------------------

    async def define(self, board: Board, actions: Iterable[str]) -> tuple[BoardEntry, bool]:
        """Create or change a runtime board. Returns it, and whether it is new."""
        actions = tuple(dict.fromkeys(actions))
        existing = self._state.entries.get(board.id)
        if existing is not None and existing.source == "file":
            raise BoardConflict(
                f"board '{board.id}' is defined in the actions file: change it there"
            )
        if existing is not None and not existing.board.same_rules(board):
            raise BoardConflict(
                "a board's operator, order, reset and timezone never change (its scores were "
                "ranked by them): retire it and define a board with another id"
            )
        unknown = [a for a in actions if a not in self._file_feeds]
        if unknown:
            raise InvalidBoard(
                f"unknown action types {unknown}", extra={"knownTypes": sorted(self._file_feeds)}
            )
        if existing is None and len(self._state.entries) >= MAX_BOARDS:
            raise BoardConflict(f"at most {MAX_BOARDS} boards; retire one first")
        crowded = [a for a in actions if board.id not in {e.id for e in self.feeds(a)}]
        crowded = [a for a in crowded if len(self.feeds(a)) >= MAX_FEEDS_PER_TYPE]
        if crowded:
            raise InvalidBoard(f"action types {crowded} already feed {MAX_FEEDS_PER_TYPE} boards")
        definition = {**board.model_dump(mode="json", exclude={"id"}), "actions": list(actions)}
        async with self._repository.changing(self.clock) as (conn, now):
            await self._repository.save_definition(conn, board.id, definition, now)
        await self.refresh()
        return self.entry(board.id), existing is None

    async def retire(self, board_id: str) -> BoardEntry:
        entry = self.entry(board_id)
        if entry.active:
            async with self._repository.changing(self.clock) as (conn, now):
                await self._repository.retire(conn, board_id, now)
            await self.refresh()
        return self.entry(board_id)

    async def rollover(self, board_id: str) -> tuple[Period, Period]:
        """Close the board's current period now; returns the closed and the opened one."""
        entry = self.entry(board_id)
        async with self._repository.changing(self.clock) as (conn, now):
            # Decided on what the database holds now that the lock is ours: another instance
            # may have rolled it over (or retired it) a moment ago.
            stored = await self._repository.load(conn)
            row = stored.boards.get(board_id)
            if not entry.active or (row is not None and row.retired_at is not None):
                raise BoardConflict(f"board '{board_id}' is retired")
            cuts = stored.rollovers.get(board_id, ())
            if cuts:  # never before the last cut, whatever this instance's clock says
                now = max(now, cuts[-1] + MICROSECOND)
            closed = Timeline(entry.board, cuts).at(now)
            if closed.start == now:
                raise BoardConflict("the current period began this instant; nothing to close")
            opened = Timeline(entry.board, (*cuts, now)).at(now)
            await self._repository.add_rollover(conn, board_id, now, closed.key, opened.key)
        await self.refresh()
        return closed, opened


def _runtime_board(board_id: str, definition: dict[str, Any]) -> Board:
    rules = {k: v for k, v in definition.items() if k != "actions"}
    try:
        return Board.model_validate({**rules, "id": board_id})
    except ValidationError as exc:  # written by this code, so only a hand edit gets here
        raise BoardDefinitionError(f"board '{board_id}' in the database: {exc}") from exc
