"""Examples of every request and response body in the OpenAPI schema, so generated clients
and the docs pages show real payloads. ``tests/test_openapi.py`` validates each one against
the schema it illustrates, so they cannot drift from the code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import OpenAPI, Schema
from litestar.openapi.spec.base import BaseSchemaObject

AT = "2026-12-02T12:00:00Z"
LATER = "2026-12-02T12:10:00Z"
ENTRY = {"userId": "u-123", "username": "Ann", "score": 1250, "rank": 1}
UPDATE = {
    "id": "0f0c3a64-4e0c-4e48-9a3a-7d8a6c1f2b11",
    "actionId": "b3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    "actionType": "level_complete",
    "scoreChange": 10,
    "value": None,
    "boards": {"global": "all", "weekly": "2026-W49"},
    "timestamp": AT,
    "recordedAt": AT,
    "clientIp": "203.0.113.7",
}
BOARD = {
    "id": "weekly",
    "title": "This week",
    "operator": "sum",
    "order": "desc",
    "reset": "weekly",
    "timezone": "UTC",
    "keepPeriods": 4,
    "actions": ["level_complete"],
}
BOARD_VIEW = {
    **BOARD,
    "source": "catalog",
    "status": "active",
    "retiredAt": None,
    "current": {"key": "2026-W49", "start": "2026-11-30T00:00:00Z", "end": "2026-12-07T00:00:00Z"},
    "readablePeriods": ["2026-W49", "2026-W48", "2026-W47"],
}
FLAG = {
    "id": "5d2c8f0e-9b1a-4c3d-8e7f-6a5b4c3d2e1f",
    "userId": "u-123",
    "clientIp": "203.0.113.7",
    "rule": "points_per_minute",
    "policy": "flag",
    "evidence": {"points": 400, "limit": 300},
    "createdAt": AT,
    "resolvedAt": None,
    "resolvedBy": None,
    "resolution": None,
}
TICKET = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxMjM0NTY3ODlhYiJ9.eyJzdWIiOiJ1LTEyMyJ9.c2ln"
OTHER_TICKET = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxMjM0NTY3ODlhYiJ9.eyJzdWIiOiJ1LTQ1NiJ9.c2ln"
BATCH_ACCEPTED = {
    "actionId": TICKET,
    "success": True,
    "newScore": 1250,
    "rank": 1,
    "boards": [{"board": "global", "period": "all", "score": 1250, "rank": 1}],
}
EXAMPLES: dict[str, Any] = {
    "IssueActionRequest": {"type": "level_complete"},
    "ActionTicketResponse": {
        "actionId": "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxMjM0NTY3ODlhYiJ9.eyJzdWIiOiJ1LTEyMyJ9.c2ln",
        "type": "level_complete",
        "points": 10,
        "issuedAt": AT,
        "notBefore": AT,
        "expiresAt": LATER,
        "boards": ["global", "weekly", "daily"],
        "value": None,
    },
    "ScoreUpdateRequest": {
        "actionId": "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxMjM0NTY3ODlhYiJ9.eyJzdWIiOiJ1LTEyMyJ9.c2ln",
        "timestamp": AT,
    },
    "ScoreUpdateResponse": {
        "success": True,
        "newScore": 1250,
        "rank": 1,
        "boards": [
            {"board": "global", "period": "all", "score": 1250, "rank": 1},
            {"board": "weekly", "period": "2026-W49", "score": 80, "rank": 3},
        ],
    },
    "ScoreBatchRequest": {
        "updates": [
            {"actionId": TICKET, "timestamp": AT},
            {"actionId": OTHER_TICKET, "timestamp": AT},
        ]
    },
    "ScoreBatchResponse": {
        "results": [
            BATCH_ACCEPTED,
            {
                "actionId": OTHER_TICKET,
                "success": False,
                "code": "action_already_used",
                "detail": "this action was already completed",
            },
        ]
    },
    "BatchResult": BATCH_ACCEPTED,
    "LeaderboardResponse": {"leaderboard": [ENTRY, {**ENTRY, "userId": "u-7", "rank": 1}]},
    "MyStanding": {**ENTRY, "above": [], "below": [{**ENTRY, "userId": "u-9", "rank": 2}]},
    "BoardLeaderboard": {
        "board": "weekly",
        "period": "2026-W49",
        "total": 812,
        "leaderboard": [ENTRY],
    },
    "BoardStanding": {
        "board": "weekly",
        "period": "2026-W49",
        "userId": "u-123",
        "username": "Ann",
        "score": 80,
        "rank": 3,
        "percentile": 99.75,
        "total": 812,
        "above": [],
        "below": [],
    },
    "BoardView": BOARD_VIEW,
    "BoardList": {"boards": [BOARD_VIEW]},
    "WsTicketResponse": {
        "ticket": "Wm9vZ2xlLXRpY2tldC0xMjM0NTY3ODk",
        "expiresAt": "2026-12-02T12:00:30Z",
    },
    "Alive": {"status": "ok"},
    "Health": {"status": "ok", "database": "ok", "writer": "ok", "redis": "ok"},
    "Problem": {
        "type": "https://scoreboard.dev/problems/action_already_used",
        "title": "This action was already completed",
        "status": 409,
        "detail": "this action was already completed",
        "code": "action_already_used",
        "instance": "/api/scores/update",
    },
    "AdjustRequest": {"points": -50, "reason": "refund of a disputed run", "board": "global"},
    "ResetRequest": {"reason": "cheating confirmed", "board": "global"},
    "ReasonRequest": {"reason": "chargeback fraud"},
    "BoardDefinitionRequest": {
        "reason": "winter event",
        "title": "Winter event",
        "operator": "best",
        "order": "desc",
        "reset": "manual",
        "timezone": "Europe/Berlin",
        "keepPeriods": 3,
        "actions": ["level_complete"],
    },
    "RolloverView": {"board": "weekly", "closedPeriod": "2026-W49", "period": "2026-W49.2"},
    "ScoreChanged": {
        "userId": "u-123",
        "newScore": 1200,
        "rank": 2,
        "board": "global",
        "period": "all",
    },
    "SuspensionView": {"userId": "u-123", "suspended": True, "changed": True},
    "UserHistory": {"userId": "u-123", "score": 1250, "suspended": False, "updates": [UPDATE]},
    "FlagView": FLAG,
    "FlagList": {"flags": [FLAG]},
}


@dataclass
class _Verbatim(BaseSchemaObject):
    """An example rendered as written: Litestar drops ``None`` from the dicts of a schema,
    and an example's nulls are part of what it shows."""

    value: Any

    def to_schema(self) -> Any:
        return self.value


def add_examples(openapi: OpenAPI) -> None:
    """Attach each example to the component schema of its name."""
    schemas: dict[str, Schema] = (openapi.components.schemas or {}) if openapi.components else {}
    for name, example in EXAMPLES.items():
        if name in schemas:
            schemas[name].examples = [_Verbatim(example)]
