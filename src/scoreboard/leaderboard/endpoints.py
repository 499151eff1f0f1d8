from __future__ import annotations

from typing import Annotated

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from scoreboard.auth.guards import ApiRequest, can_read, current_principal, requires
from scoreboard.auth.principal import Scope
from scoreboard.auth.tokens import valid_user_id
from scoreboard.errors import ValidationFailed, problem_responses
from scoreboard.leaderboard.schemas import (
    BoardLeaderboard,
    BoardStanding,
    LeaderboardResponse,
    MyStanding,
)
from scoreboard.leaderboard.service import EncodedBoard, LeaderboardService

MAX_LIMIT = 100
MAX_OFFSET = 100_000_000
MAX_USERS = 100
MAX_RADIUS = 25

BoardId = Annotated[str, PathParameter(min_length=1, max_length=64, description="A board id")]
PeriodQuery = Annotated[
    str,
    QueryParameter(
        min_length=1,
        max_length=80,
        description="current, previous, or a period key such as 2026-12-01 or 2026-W49",
    ),
]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="How many entries")]
NOT_MODIFIED = ResponseSpec(data_container=None, description="Not modified since the ETag")


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


def _conditional(request: ApiRequest, board: EncodedBoard) -> Response[bytes]:
    """The encoded body with its ETag, or 304 when the client holds that version."""
    headers = {"ETag": board.etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), board.etag):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=board.body, media_type="application/json", headers=headers)


def _user_ids(users: str) -> list[str]:
    ids = [part.strip() for part in users.split(",")]
    if not ids or len(ids) > MAX_USERS or not all(valid_user_id(i) for i in ids):
        raise ValidationFailed(
            f"users must be 1 to {MAX_USERS} comma-separated user ids (1-36 printable "
            "characters, no spaces)"
        )
    return ids


@get(
    "/api/leaderboard",
    guards=[can_read],
    summary="The top of the leaderboard (board `global`)",
    description=(
        "Competition ranking (ties share a rank); ties listed in the order they reached the "
        "score. Send the ETag back in If-None-Match to get 304 when nothing changed."
    ),
    responses={
        200: ResponseSpec(data_container=LeaderboardResponse, description="The top N"),
        304: NOT_MODIFIED,
        **problem_responses(400, 401, 403, 404),
    },
    tags=["leaderboard"],
    operation_id="getLeaderboard",
)
async def read_leaderboard(
    request: ApiRequest, leaderboard: NamedDependency[LeaderboardService], limit: Limit = 10
) -> Response[bytes]:
    return _conditional(request, await leaderboard.top(limit))


@get(
    "/api/leaderboard/me",
    guards=[requires(Scope.READ)],
    summary="The caller's own score and rank on `global`, with the entries above and below",
    tags=["leaderboard"],
    responses=problem_responses(401, 403, 404),
    operation_id="getMyStanding",
)
async def read_my_standing(
    request: ApiRequest, leaderboard: NamedDependency[LeaderboardService]
) -> MyStanding:
    return await leaderboard.standing(current_principal(request))


@get(
    "/api/boards/{board:str}/leaderboard",
    guards=[can_read],
    summary="A page of a board, in any readable period; or just some users (a friends view)",
    description=(
        "`period` is `current` (default), `previous` or a period key. `limit`/`offset` page "
        "through the board; with `users=a,b,c` (up to 100 ids) only those users come back, "
        "with their ranks on the whole board. ETag and If-None-Match as on /api/leaderboard."
    ),
    responses={
        200: ResponseSpec(data_container=BoardLeaderboard, description="The page"),
        304: NOT_MODIFIED,
        **problem_responses(400, 401, 403, 404),
    },
    tags=["leaderboard"],
    operation_id="getBoardLeaderboard",
)
async def read_board(
    request: ApiRequest,
    leaderboard: NamedDependency[LeaderboardService],
    board: BoardId,
    period: PeriodQuery = "current",
    limit: Limit = 10,
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
    users: Annotated[
        str | None, QueryParameter(min_length=1, max_length=MAX_USERS * 37, required=False)
    ] = None,
) -> Response[bytes]:
    key = leaderboard.key(board, period)
    if users is not None:
        return _conditional(request, await leaderboard.friends(key, _user_ids(users)))
    return _conditional(request, await leaderboard.page(key, limit, offset))


@get(
    "/api/boards/{board:str}/me",
    guards=[requires(Scope.READ)],
    summary="The caller's score, rank and percentile on a board, with neighbours",
    tags=["leaderboard"],
    responses=problem_responses(400, 401, 403, 404),
    operation_id="getMyBoardStanding",
)
async def read_my_board_standing(
    request: ApiRequest,
    leaderboard: NamedDependency[LeaderboardService],
    board: BoardId,
    period: PeriodQuery = "current",
    radius: Annotated[
        int, QueryParameter(ge=0, le=MAX_RADIUS, description="Neighbours on each side")
    ] = 2,
) -> BoardStanding:
    key = leaderboard.key(board, period)
    return await leaderboard.board_standing(current_principal(request), key, radius)
