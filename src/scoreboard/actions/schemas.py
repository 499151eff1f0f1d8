from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

UserId = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=36, description="1-36 printable characters, no spaces"),
]
TypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Value = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=2**53 - 1,
        description="What best/latest boards rank (e.g. a run's score, a time in ms); only "
        "with the actions:issue scope",
    ),
]


class IssueActionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Ask for an action ticket. ``type`` defaults to the catalog's default type; ``userId``
    and ``value`` are for trusted backends holding the ``actions:issue`` scope."""

    type: TypeName | None = None
    user_id: UserId | None = None
    value: Value | None = None


class ActionTicketResponse(msgspec.Struct, rename="camel", omit_defaults=True):
    action_id: str
    type: str
    points: int
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    boards: list[str]
    value: int | None = None
