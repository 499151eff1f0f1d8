from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from scoreboard.actions.schemas import ActionTicketResponse, IssueActionRequest
from scoreboard.actions.service import ActionService
from scoreboard.auth.guards import ApiRequest, current_principal
from scoreboard.errors import problem_responses
from scoreboard.ratelimit import per_user
from scoreboard.requests import strictly


@post(
    "/api/actions",
    status_code=201,
    summary="Issue a single-use action ticket",
    description=(
        "Returns a signed ticket worth the catalog's points for the action type. Complete it "
        "with POST /api/scores/update between notBefore and expiresAt. Needs `scores:write` "
        "for oneself, or `actions:issue` to issue for another `userId` or with a `value` (what "
        "best/latest boards rank). `boards` lists the boards it will feed. Writes nothing."
    ),
    tags=["actions"],
    guards=[per_user(lambda rates: rates.actions_per_user)],
    responses=problem_responses(400, 401, 403, 413, 415, 422, 429),
    operation_id="issueAction",
)
async def issue_action(
    request: ApiRequest,
    action_service: NamedDependency[ActionService],
    data: JSONBody[IssueActionRequest | None] = None,
) -> ActionTicketResponse:
    principal = current_principal(request)
    if data is not None and data.value is not None:
        data = await strictly(request, IssueActionRequest)  # value must be a JSON integer
    request_body = data or IssueActionRequest()
    token, ticket, feeds = action_service.issue(
        principal, request_body.type, request_body.user_id, request_body.value
    )
    return ActionTicketResponse(
        action_id=token,
        type=ticket.type,
        points=ticket.points,
        issued_at=ticket.issued_at,
        not_before=ticket.not_before,
        expires_at=ticket.expires_at,
        boards=[entry.id for entry in feeds],
        value=ticket.value,
    )
