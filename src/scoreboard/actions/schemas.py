from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

UserId = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=36, description="1-36 printable characters, no spaces"),
]
TypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class IssueActionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Ask for an action ticket. ``type`` defaults to the catalog's default type; ``userId``
    is for trusted backends holding the ``actions:issue`` scope."""

    type: TypeName | None = None
    user_id: UserId | None = None


class ActionTicketResponse(msgspec.Struct, rename="camel"):
    action_id: str
    type: str
    points: int
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
