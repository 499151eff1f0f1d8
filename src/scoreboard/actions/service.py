"""Issuing action tickets: who may ask, for whom, and for what."""

from __future__ import annotations

from datetime import UTC, datetime

from scoreboard.actions.catalog import Catalog
from scoreboard.actions.tickets import Ticket, TicketSigner
from scoreboard.auth.principal import Principal, Scope
from scoreboard.auth.tokens import valid_user_id
from scoreboard.errors import InsufficientScope, ValidationFailed


class ActionService:
    def __init__(self, catalog: Catalog, signer: TicketSigner) -> None:
        self._catalog = catalog
        self._signer = signer

    def issue(
        self, principal: Principal, action_type: str | None, for_user: str | None
    ) -> tuple[str, Ticket]:
        if for_user is not None and not valid_user_id(for_user):
            raise ValidationFailed("userId must be 1 to 36 printable characters, no spaces")
        if for_user is not None and for_user != principal.user_id:
            if not principal.has(Scope.ISSUE):
                raise InsufficientScope(Scope.ISSUE.value)
        elif not (principal.has(Scope.WRITE) or principal.has(Scope.ISSUE)):
            raise InsufficientScope(Scope.WRITE.value)
        action = self._catalog.get(action_type)
        return self._signer.issue(for_user or principal.user_id, action, datetime.now(UTC))
