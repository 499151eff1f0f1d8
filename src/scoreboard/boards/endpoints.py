"""``GET /api/boards``: every board with its rules and its current period."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency

from scoreboard.auth.guards import can_read
from scoreboard.boards.periods import Period
from scoreboard.boards.schemas import BoardList, BoardView, PeriodView
from scoreboard.boards.service import BoardEntry, BoardRegistry
from scoreboard.errors import problem_responses


def period_view(period: Period) -> PeriodView:
    return PeriodView(key=period.key, start=period.start, end=period.end)


def board_view(entry: BoardEntry, registry: BoardRegistry) -> BoardView:
    board = entry.board
    readable = registry.readable(entry)
    return BoardView(
        id=board.id,
        title=board.display_title,
        operator=board.operator.value,
        order=board.order.value,
        reset=board.reset,
        timezone=board.timezone,
        keep_periods=board.keep_periods,
        actions=list(entry.actions),
        source=entry.source,
        status="active" if entry.active else "retired",
        retired_at=entry.retired_at,
        current=period_view(registry.current(entry)) if entry.active else None,
        readable_periods=[p.key for p in readable],
    )


@get(
    "/api/boards",
    guards=[can_read],
    summary="Every board: its rules, its current period (key, start, end) and readable periods",
    tags=["boards"],
    responses=problem_responses(401, 403),
    operation_id="listBoards",
)
async def list_boards(boards: NamedDependency[BoardRegistry]) -> BoardList:
    return BoardList(boards=[board_view(entry, boards) for entry in boards.entries()])
