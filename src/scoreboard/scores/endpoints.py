from __future__ import annotations

import ipaddress

from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from scoreboard.auth.guards import ApiRequest, current_principal, requires
from scoreboard.auth.principal import Scope
from scoreboard.errors import problem_responses
from scoreboard.ratelimit import per_user
from scoreboard.scores.schemas import BoardResult, ScoreUpdateRequest, ScoreUpdateResponse
from scoreboard.scores.service import ScoreService


def _ip(host: str) -> str | None:
    """Only a real address goes into the audit row (a proxy header could carry anything)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


@post(
    "/api/scores/update",
    status_code=200,
    guards=[requires(Scope.WRITE), per_user(lambda rates: rates.updates_per_user)],
    summary="Complete an action and add its points",
    description=(
        "Consumes an action ticket exactly once. The points are the ticket's; the timestamp "
        "must lie within the clock skew of server time and inside the ticket's window. "
        "It counts on every board the action type feeds, in each board's current period. "
        "Acknowledged only after the update is durable."
    ),
    tags=["scores"],
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
    operation_id="updateScore",
)
async def update_score(
    data: JSONBody[ScoreUpdateRequest], request: ApiRequest, scores: NamedDependency[ScoreService]
) -> ScoreUpdateResponse:
    principal = current_principal(request)
    client_ip = _ip(request.client.host) if request.client else None
    standings = await scores.complete_action(
        principal, data.action_id, data.completed_at(), client_ip
    )
    primary = standings[0]
    return ScoreUpdateResponse(
        success=True,
        new_score=primary.score,
        rank=primary.rank,
        boards=[BoardResult(s.board, s.period, s.score, s.rank) for s in standings],
    )
