from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from scoreboard.actions.tickets import MAX_TICKET_LENGTH
from scoreboard.errors import ValidationFailed

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class ScoreUpdateRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Complete an action. The points come from the signed ticket, never from the client;
    fields such as ``score`` or ``userId`` are refused."""

    action_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TICKET_LENGTH)]
    timestamp: Annotated[
        str,
        msgspec.Meta(
            max_length=64,
            description="When the action was completed: ISO 8601 with offset",
            examples=["2026-11-27T17:30:00Z"],
        ),
    ]

    def completed_at(self) -> datetime:
        """The timestamp, parsed strictly (RFC 3339 with an offset; no Unix numbers)."""
        try:
            return msgspec.convert(self.timestamp, Timestamp)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(
                "timestamp must be ISO 8601 with an offset, e.g. 2026-11-27T17:30:00Z"
            ) from exc


class BoardResult(msgspec.Struct, rename="camel"):
    board: str
    period: str
    score: int
    rank: int


class ScoreUpdateResponse(msgspec.Struct, rename="camel"):
    """``newScore`` and ``rank`` are on the action's primary board (``global`` unless the
    catalog says otherwise); ``boards`` has every board it fed."""

    success: bool
    new_score: int
    rank: int
    boards: list[BoardResult]


MAX_BATCH = 100  # updates in one batch request
# Room for MAX_BATCH tickets of the longest kind, each with its timestamp and the JSON around.
BATCH_MAX_BODY = 256 * 1024


class ScoreBatchRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Complete up to 100 actions at once, each as ``POST /api/scores/update`` would."""

    updates: Annotated[
        list[ScoreUpdateRequest],
        msgspec.Meta(
            min_length=1,
            description=f"1 to {MAX_BATCH} completions; each gets its own result, in order",
            extra_json_schema={"extra": {"maxItems": MAX_BATCH}},
        ),
    ]


class BatchResult(msgspec.Struct, rename="camel", omit_defaults=True):
    """One item's result, in one of two shapes. Scored: ``{actionId, success: true,
    newScore, rank, boards}``, as ``POST /api/scores/update`` answers. Not scored:
    ``{actionId, success: false, code, detail}``, the problem ``code`` and ``detail`` that
    route would have answered for this item alone."""

    action_id: str
    success: bool
    new_score: int | None = None
    rank: int | None = None
    boards: list[BoardResult] | None = None
    code: str | None = None
    detail: str | None = None


class ScoreBatchResponse(msgspec.Struct, rename="camel"):
    results: list[BatchResult]
