from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from scoreboard.actions.tickets import MAX_TICKET_LENGTH


class ScoreUpdateRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Complete an action. The points come from the signed ticket, never from the client;
    fields such as ``score`` or ``userId`` are refused."""

    action_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TICKET_LENGTH)]
    timestamp: Annotated[
        datetime,
        msgspec.Meta(tz=True, description="When the action was completed: ISO 8601 with offset"),
    ]


class ScoreUpdateResponse(msgspec.Struct, rename="camel"):
    success: bool
    new_score: int
    rank: int
