from __future__ import annotations

from typing import Annotated

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from scoreboard.auth.guards import ApiRequest, can_read, current_principal, requires
from scoreboard.auth.principal import Scope
from scoreboard.errors import problem_responses
from scoreboard.leaderboard.schemas import LeaderboardResponse, MyStanding
from scoreboard.leaderboard.service import LeaderboardService

MAX_LIMIT = 100


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


@get(
    "/api/leaderboard",
    guards=[can_read],
    summary="The top of the leaderboard",
    description=(
        "Competition ranking (ties share a rank); ties listed in the order they reached the "
        "score. Send the ETag back in If-None-Match to get 304 when nothing changed."
    ),
    responses={
        200: ResponseSpec(data_container=LeaderboardResponse, description="The top N"),
        304: ResponseSpec(data_container=None, description="Not modified since the ETag"),
        **problem_responses(400, 401, 403),
    },
    tags=["leaderboard"],
)
async def read_leaderboard(
    request: ApiRequest,
    leaderboard: NamedDependency[LeaderboardService],
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="How many entries")] = 10,
) -> Response[bytes]:
    board = await leaderboard.top(limit)
    headers = {"ETag": board.etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), board.etag):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=board.body, media_type="application/json", headers=headers)


@get(
    "/api/leaderboard/me",
    guards=[requires(Scope.READ)],
    summary="The caller's own score and rank, with the entries just above and below",
    tags=["leaderboard"],
    responses=problem_responses(401, 403),
)
async def read_my_standing(
    request: ApiRequest, leaderboard: NamedDependency[LeaderboardService]
) -> MyStanding:
    return await leaderboard.standing(current_principal(request))
