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
