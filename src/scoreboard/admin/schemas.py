from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

Reason = Annotated[
    str,
    msgspec.Meta(min_length=3, max_length=500, pattern=r"\S.*\S", description="Why (audited)"),
]


class ReasonRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class AdjustRequest(msgspec.Struct, forbid_unknown_fields=True):
    points: Annotated[int, msgspec.Meta(ge=-1_000_000_000, le=1_000_000_000)]
    reason: Reason


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


class SuspensionView(msgspec.Struct, rename="camel"):
    user_id: str
    suspended: bool
    changed: bool
