"""/api/admin: needs the `scores:admin` scope on every route."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter

from scoreboard.abuse.repository import Flag
from scoreboard.admin.schemas import (
    AdjustRequest,
    FlagList,
    FlagView,
    ReasonRequest,
    ScoreChanged,
    SuspensionView,
    UpdateView,
    UserHistory,
)
from scoreboard.admin.service import AdminService
from scoreboard.auth.guards import ApiRequest, current_principal, requires
from scoreboard.auth.principal import Scope
from scoreboard.errors import problem_responses

Limit = Annotated[int, QueryParameter(ge=1, le=500)]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000)]
UserId = Annotated[str, PathParameter(min_length=1, max_length=36)]


ERRORS = problem_responses(400, 401, 403, 404, 422)


def _view(flag: Flag) -> FlagView:
    return FlagView(**dataclasses.asdict(flag))  # the same fields, named for the API


class AdminController(Controller):
    path = "/api/admin"
    guards = [requires(Scope.ADMIN)]  # noqa: RUF012 - Litestar's declared layer attribute
    tags = ["admin"]  # noqa: RUF012
    responses = problem_responses(400, 401, 403, 404, 422)

    @get("/flags", summary="List abuse flags", responses=ERRORS)
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
        "/flags/{flag_id:str}/resolve", status_code=200, summary="Resolve a flag", responses=ERRORS
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
        summary="Add or remove points",
        responses=ERRORS,
    )
    async def adjust(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        data: JSONBody[AdjustRequest],
    ) -> ScoreChanged:
        principal = current_principal(request)
        new_score, rank = await admin.adjust(principal, user_id, data.points, data.reason)
        return ScoreChanged(user_id=user_id, new_score=new_score, rank=rank)

    @post(
        "/users/{user_id:str}/reset",
        status_code=200,
        summary="Set a user's score to zero",
        responses=ERRORS,
    )
    async def reset(
        self,
        request: ApiRequest,
        admin: NamedDependency[AdminService],
        user_id: UserId,
        data: JSONBody[ReasonRequest],
    ) -> ScoreChanged:
        new_score, rank = await admin.reset(current_principal(request), user_id, data.reason)
        return ScoreChanged(user_id=user_id, new_score=new_score, rank=rank)

    @post(
        "/users/{user_id:str}/suspend",
        status_code=200,
        summary="Suspend from scoring",
        responses=ERRORS,
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
