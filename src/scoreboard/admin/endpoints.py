"""/api/admin: needs the `scores:admin` scope on every route."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Literal

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter

from scoreboard.abuse.repository import Flag
from scoreboard.admin.schemas import (
    AdjustRequest,
    BoardDefinitionRequest,
    FlagList,
    FlagView,
    ReasonRequest,
    ResetRequest,
    RolloverView,
    ScoreChanged,
    SuspensionView,
    UpdateView,
    UserHistory,
)
from scoreboard.admin.service import AdminService
from scoreboard.auth.guards import ApiRequest, current_principal, requires
from scoreboard.auth.principal import Scope
from scoreboard.boards.endpoints import board_view
from scoreboard.boards.schemas import BoardView
from scoreboard.boards.service import BoardRegistry
from scoreboard.errors import problem_responses
from scoreboard.requests import strictly
from scoreboard.scores.service import Standing

Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000)]
UserId = Annotated[str, PathParameter(min_length=1, max_length=36)]
BoardId = Annotated[str, PathParameter(min_length=1, max_length=64)]


ERRORS = problem_responses(400, 401, 403, 404, 422)
BOARD_ERRORS = problem_responses(400, 401, 403, 404, 409, 422)


def _view(flag: Flag) -> FlagView:
    return FlagView(**dataclasses.asdict(flag))  # the same fields, named for the API


def _changed(user_id: str, standing: Standing) -> ScoreChanged:
    return ScoreChanged(
        user_id=user_id,
        new_score=standing.score,
        rank=standing.rank,
        board=standing.board,
        period=standing.period,
    )


class AdminController(Controller):
    path = "/api/admin"
    guards = [requires(Scope.ADMIN)]  # noqa: RUF012 - Litestar's declared layer attribute
    tags = ["admin"]  # noqa: RUF012
    responses = problem_responses(400, 401, 403, 404, 422)

    @get("/flags", summary="List abuse flags", responses=ERRORS, operation_id="listFlags")
    async def list_flags(
        self,
        admin: NamedDependency[AdminService],
        status: FromQuery[Literal["open", "resolved", "all"]] = "open",
        user_id: Annotated[str | None, QueryParameter(name="userId", max_length=36)] = None,
        rule: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> FlagList:
        flags = await admin.flags(status, user_id, rule, limit, offset)
        return FlagList(flags=[_view(f) for f in flags])

    @post(
        "/flags/{flag_id:str}/resolve",
        status_code=200,
        summary="Resolve a flag",
        responses=ERRORS,
        operation_id="resolveFlag",
    )
    async def resolve_flag(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        flag_id: FromPath[str],
        data: JSONBody[ReasonRequest],
    ) -> FlagView:
        return _view(await admin.resolve_flag(current_principal(request), flag_id, data.reason))

    @get(
        "/users/{user_id:str}/history",
        summary="A user's score, suspension and update history",
        responses=ERRORS,
        operation_id="getUserHistory",
    )
    async def history(
        self,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> UserHistory:
        score, suspended, rows = await admin.history(user_id, limit, offset)
        updates = [
            UpdateView(
                id=str(r["id"]),
                action_id=str(r["action_id"]),
                action_type=str(r["action_type"]),
                score_change=int(str(r["score_change"])),
                value=None if r["value"] is None else int(str(r["value"])),
                boards=json.loads(str(r["boards"])),
                timestamp=r["timestamp"],  # type: ignore[arg-type]
                recorded_at=r["recorded_at"],  # type: ignore[arg-type]
                client_ip=r["client_ip"] if r["client_ip"] is None else str(r["client_ip"]),
            )
            for r in rows
        ]
        return UserHistory(user_id=user_id, score=score, suspended=suspended, updates=updates)

    @post(
        "/users/{user_id:str}/adjust",
        status_code=200,
        summary="Add or remove points on a sum board (default global), current period",
        responses=ERRORS,
        operation_id="adjustUserScore",
    )
    async def adjust(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        data: JSONBody[AdjustRequest],
    ) -> ScoreChanged:
        data = await strictly(request, AdjustRequest)  # points must be a JSON integer
        principal = current_principal(request)
        standing = await admin.adjust(principal, user_id, data.points, data.reason, data.board)
        return _changed(user_id, standing)

    @post(
        "/users/{user_id:str}/reset",
        status_code=200,
        summary="Set a user's score on a sum board (default global) to zero",
        responses=ERRORS,
        operation_id="resetUserScore",
    )
    async def reset(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        data: JSONBody[ResetRequest],
    ) -> ScoreChanged:
        principal = current_principal(request)
        standing = await admin.reset(principal, user_id, data.reason, data.board)
        return _changed(user_id, standing)

    @post(
        "/users/{user_id:str}/suspend",
        status_code=200,
        summary="Suspend from scoring",
        responses=ERRORS,
        operation_id="suspendUser",
    )
    async def suspend(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        data: JSONBody[ReasonRequest],
    ) -> SuspensionView:
        changed = await admin.suspend(current_principal(request), user_id, data.reason)
        return SuspensionView(user_id=user_id, suspended=True, changed=changed)

    @post(
        "/users/{user_id:str}/unsuspend",
        status_code=200,
        summary="Lift a suspension",
        responses=ERRORS,
        operation_id="unsuspendUser",
    )
    async def unsuspend(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        data: JSONBody[ReasonRequest],
    ) -> SuspensionView:
        changed = await admin.unsuspend(current_principal(request), user_id, data.reason)
        return SuspensionView(user_id=user_id, suspended=False, changed=changed)

    @put(
        "/boards/{board:str}",
        status_code=200,
        summary="Create or change a runtime board",
        description=(
            "Creates the board (201) or changes its title, keepPeriods and actions (200). Its "
            "operator, order, reset and timezone never change, and a board of the catalog file "
            "cannot be redefined here (409)."
        ),
        responses={
            201: ResponseSpec(data_container=BoardView, description="Created"),
            **BOARD_ERRORS,
        },
        operation_id="defineBoard",
    )
    async def define_board(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        boards: NamedDependency[BoardRegistry],
        board: BoardId,
        data: JSONBody[BoardDefinitionRequest],
    ) -> Response[BoardView]:
        data = await strictly(request, BoardDefinitionRequest)  # keepPeriods: a JSON integer
        rules = {
            "id": board,
            "title": data.title,
            "operator": data.operator,
            "order": data.order,
            "reset": data.reset,
            "timezone": data.timezone,
            "keep_periods": data.keep_periods,
        }
        entry, created = await admin.define_board(
            current_principal(request), rules, data.actions, data.reason
        )
        return Response(board_view(entry, boards), status_code=201 if created else 200)

    @delete(
        "/boards/{board:str}",
        status_code=200,
        summary="Retire a board: it takes no more scores; its periods stay readable",
        responses=BOARD_ERRORS,
        operation_id="retireBoard",
    )
    async def retire_board(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        boards: NamedDependency[BoardRegistry],
        board: BoardId,
        data: JSONBody[ReasonRequest],
    ) -> BoardView:
        entry = await admin.retire_board(current_principal(request), board, data.reason)
        return board_view(entry, boards)

    @post(
        "/boards/{board:str}/rollover",
        status_code=200,
        summary="Close the board's current period now and start the next",
        responses=BOARD_ERRORS,
        operation_id="rolloverBoard",
    )
    async def rollover(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        board: BoardId,
        data: JSONBody[ReasonRequest],
    ) -> RolloverView:
        closed, opened = await admin.rollover(current_principal(request), board, data.reason)
        return RolloverView(board=board, closed_period=closed.key, period=opened.key)
