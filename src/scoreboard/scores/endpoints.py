from __future__ import annotations

import ipaddress
from datetime import datetime

from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from scoreboard.auth.guards import ApiRequest, current_principal, requires
from scoreboard.auth.principal import Scope
from scoreboard.errors import BatchTooLarge, ScoreboardError, ValidationFailed, problem_responses
from scoreboard.scores.models import Completion
from scoreboard.scores.schemas import (
    BATCH_MAX_BODY,
    MAX_BATCH,
    BatchResult,
    BoardResult,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreUpdateRequest,
    ScoreUpdateResponse,
)
from scoreboard.scores.service import ItemOutcome, ScoreService


def _ip(host: str) -> str | None:
    """Only a real address goes into the audit row (a proxy header could carry anything)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


@post(
    "/api/scores/update",
    status_code=200,
    guards=[requires(Scope.WRITE)],  # the update rate: counted by the service (one Redis call)
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


@post(
    "/api/scores/batch",
    status_code=200,
    guards=[requires(Scope.WRITE, Scope.SUBMIT)],
    request_max_body_size=BATCH_MAX_BODY,
    summary="Complete up to 100 actions in one request",
    description=(
        "Each item is checked as POST /api/scores/update checks it and gets its own result, "
        "in input order: `success: true` with `newScore`, `rank` and `boards`, or "
        "`success: false` with the problem `code` and `detail` that route would answer "
        "(`action_already_used`, `action_not_owned`, `velocity_exceeded`, ...). The accepted "
        "items commit together in one transaction, each ticket exactly once (a copy later in "
        "the batch is `action_already_used`). `scores:write` completes the caller's own "
        "tickets; `scores:submit` (a trusted game server) completes any user's, and the "
        "ticket's user scores. Every item counts against the update rate of the user it "
        "scores and against the velocity rules. 200 whenever the batch was processed; a "
        "problem only when the request as a whole is refused (more than 100 items: 413 "
        "`batch_too_large`)."
    ),
    tags=["scores"],
    responses=problem_responses(400, 401, 403, 413, 415, 429, 503),
    operation_id="updateScoresBatch",
)
async def update_scores_batch(
    data: JSONBody[ScoreBatchRequest], request: ApiRequest, scores: NamedDependency[ScoreService]
) -> ScoreBatchResponse:
    if len(data.updates) > MAX_BATCH:
        raise BatchTooLarge(f"at most {MAX_BATCH} updates in one batch; got {len(data.updates)}")
    principal = current_principal(request)
    client_ip = _ip(request.client.host) if request.client else None
    completions = [Completion(item.action_id, _completed_at(item)) for item in data.updates]
    outcomes = await scores.complete_batch(principal, completions, client_ip)
    return ScoreBatchResponse(
        results=[
            _result(item.action_id, outcome)
            for item, outcome in zip(data.updates, outcomes, strict=True)
        ]
    )


def _completed_at(item: ScoreUpdateRequest) -> datetime | ScoreboardError:
    try:
        return item.completed_at()
    except ValidationFailed as refusal:  # this item's alone
        return refusal


def _result(action_id: str, outcome: ItemOutcome) -> BatchResult:
    if isinstance(outcome, ScoreboardError):
        return BatchResult(action_id, False, code=outcome.code, detail=outcome.detail)
    primary = outcome[0]
    return BatchResult(
        action_id,
        True,
        new_score=primary.score,
        rank=primary.rank,
        boards=[BoardResult(s.board, s.period, s.score, s.rank) for s in outcome],
    )
