from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Reason = Annotated[
    str,
    # At least two visible characters; no NUL, which no database column can store.
    msgspec.Meta(
        min_length=3,
        max_length=500,
        pattern=r"^[^\x00]*[^\x00\s][^\x00]*[^\x00\s][^\x00]*$",
        description="Why (audited)",
    ),
]


class ReasonRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


BoardId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="default global")]


class AdjustRequest(msgspec.Struct, forbid_unknown_fields=True):
    points: Annotated[int, msgspec.Meta(ge=-1_000_000_000, le=1_000_000_000)]
    reason: Reason
    board: BoardId = "global"


class ResetRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    board: BoardId = "global"


class BoardDefinitionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A runtime board. ``operator``, ``order``, ``reset`` and ``timezone`` are fixed once the
    board exists; ``title``, ``keepPeriods`` and ``actions`` may change."""

    reason: Reason
    title: Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00]*$")] = ""
    operator: Literal["sum", "best", "latest"] = "sum"
    order: Literal["desc", "asc"] = "desc"
    reset: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            description="never, daily, weekly, monthly, manual, or a five-field cron expression",
        ),
    ] = "never"
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    keep_periods: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    actions: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
        msgspec.Meta(max_length=50, description="action types that feed the board"),
    ] = msgspec.field(default_factory=list)


class RolloverView(msgspec.Struct, rename="camel"):
    board: str
    closed_period: str
    period: str


class FlagView(msgspec.Struct, rename="camel"):
    id: str
    user_id: str | None
    client_ip: str | None
    rule: str
    policy: str
    evidence: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class FlagList(msgspec.Struct):
    flags: list[FlagView]


class UpdateView(msgspec.Struct, rename="camel"):
    id: str
    action_id: str
    action_type: str
    score_change: int
    value: int | None
    boards: dict[str, str]  # board -> period it counted in
    timestamp: datetime
    recorded_at: datetime
    client_ip: str | None


class UserHistory(msgspec.Struct, rename="camel"):
    user_id: str
    score: int
    suspended: bool
    updates: list[UpdateView]


class ScoreChanged(msgspec.Struct, rename="camel"):
    user_id: str
    new_score: int
    rank: int
    board: str
    period: str


class SuspensionView(msgspec.Struct, rename="camel"):
    user_id: str
    suspended: bool
    changed: bool
