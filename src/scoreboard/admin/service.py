"""Admin operations. Each one that changes something leaves an admin_audit row with the
admin's id and reason, written in the same transaction as the change it records (board
changes excepted: their row follows the change). Score changes go through the writer like
every update, and board changes are announced to every instance."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from scoreboard.abuse.repository import AbuseRepository, AdminNote, Flag, FlagStatus
from scoreboard.abuse.service import AbuseService
from scoreboard.auth.principal import Principal
from scoreboard.boards.periods import Period
from scoreboard.boards.rules import Board
from scoreboard.boards.service import BoardEntry, BoardRegistry
from scoreboard.errors import InvalidBoard, NotFound
from scoreboard.live.broadcaster import Broadcaster
from scoreboard.records import GLOBAL, BoardsChanged
from scoreboard.scores.service import ScoreService, Standing


class AdminService:
    def __init__(
        self,
        scores: ScoreService,
        abuse: AbuseService,
        repository: AbuseRepository,
        boards: BoardRegistry,
        events: Broadcaster,
    ) -> None:
        self._scores = scores
        self._abuse = abuse
        self._repository = repository
        self._boards = boards
        self._events = events

    async def flags(
        self, status: FlagStatus, user_id: str | None, rule: str | None, limit: int, offset: int
    ) -> list[Flag]:
        return await self._repository.flags(status, user_id, rule, limit, offset)

    async def resolve_flag(self, admin: Principal, flag_id: str, reason: str) -> Flag:
        flag = await self._repository.resolve_flag(
            flag_id, AdminNote(admin.user_id, "resolve_flag", reason)
        )
        if flag is None:
            raise NotFound(f"no flag {flag_id}")
        return flag

    async def history(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[int, bool, list[dict[str, object]]]:
        """The user's current score on ``global``, suspension and audit rows."""
        standing = await self._scores.standing(user_id, GLOBAL) if self._has_global() else None
        updates = await self._repository.history(user_id, limit, offset)
        return (standing.score if standing else 0), self._abuse.is_suspended(user_id), updates

    def _has_global(self) -> bool:
        return any(entry.id == GLOBAL for entry in self._boards.entries())

    async def adjust(
        self, admin: Principal, user_id: str, points: int, reason: str, board: str
    ) -> Standing:
        note = AdminNote(admin.user_id, "adjust", reason)
        return await self._scores.admin_change(user_id, board, note, points)

    async def reset(self, admin: Principal, user_id: str, reason: str, board: str) -> Standing:
        note = AdminNote(admin.user_id, "reset", reason)
        return await self._scores.admin_change(user_id, board, note)

    async def suspend(self, admin: Principal, user_id: str, reason: str) -> bool:
        note = AdminNote(admin.user_id, "suspend", reason)
        return await self._abuse.suspend(user_id, reason, admin.user_id, note)

    async def unsuspend(self, admin: Principal, user_id: str, reason: str) -> bool:
        return await self._abuse.unsuspend(user_id, AdminNote(admin.user_id, "unsuspend", reason))

    # -- boards ----------------------------------------------------------------------------

    async def define_board(
        self, admin: Principal, rules: dict[str, Any], actions: list[str], reason: str
    ) -> tuple[BoardEntry, bool]:
        try:
            board = Board.model_validate(rules)
        except ValidationError as exc:
            problems = [
                {"key": ".".join(map(str, e["loc"])), "message": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            detail = "; ".join(f"{p['key']}: {p['message']}" for p in problems)
            raise InvalidBoard(detail, extra={"errors": problems}) from exc
        entry, created = await self._boards.define(board, actions)
        await self._audit_board(
            admin,
            "board_create" if created else "board_change",
            reason,
            {**board.model_dump(mode="json"), "actions": list(entry.actions)},
        )
        return entry, created

    async def retire_board(self, admin: Principal, board_id: str, reason: str) -> BoardEntry:
        was_active = self._boards.entry(board_id).active
        entry = await self._boards.retire(board_id)
        if was_active:
            await self._audit_board(admin, "board_retire", reason, {"board": board_id})
        return entry

    async def rollover(self, admin: Principal, board_id: str, reason: str) -> tuple[Period, Period]:
        closed, opened = await self._boards.rollover(board_id)
        await self._audit_board(
            admin,
            "board_rollover",
            reason,
            {"board": board_id, "closedPeriod": closed.key, "period": opened.key},
        )
        return closed, opened

    async def _audit_board(
        self, admin: Principal, action: str, reason: str, details: dict[str, Any]
    ) -> None:
        await self._repository.audit(AdminNote(admin.user_id, action, reason), None, details)
        # Every instance reloads the boards and its live feeds notice the change.
        await self._events.publish(BoardsChanged(self._boards.revision))
