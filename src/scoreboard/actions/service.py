"""Issuing action tickets: who may ask, for whom, for what, and with which value."""

from __future__ import annotations

from scoreboard.actions.catalog import Catalog
from scoreboard.actions.tickets import Ticket, TicketSigner
from scoreboard.auth.principal import Principal, Scope
from scoreboard.auth.tokens import valid_user_id
from scoreboard.boards.service import BoardEntry, BoardRegistry
from scoreboard.errors import InsufficientScope, InvalidValue, NoActiveBoard, ValidationFailed


class ActionService:
    def __init__(self, catalog: Catalog, signer: TicketSigner, boards: BoardRegistry) -> None:
        self._catalog = catalog
        self._signer = signer
        self._boards = boards

    def issue(
        self,
        principal: Principal,
        action_type: str | None,
        for_user: str | None,
        value: int | None = None,
    ) -> tuple[str, Ticket, tuple[BoardEntry, ...]]:
        if for_user is not None and not valid_user_id(for_user):
            raise ValidationFailed("userId must be 1 to 36 printable characters, no spaces")
        if for_user is not None and for_user != principal.user_id:
            if not principal.has(Scope.ISSUE):
                raise InsufficientScope(Scope.ISSUE.value)
        elif not (principal.has(Scope.WRITE) or principal.has(Scope.ISSUE)):
            raise InsufficientScope(Scope.WRITE.value)
        if value is not None and not principal.has(Scope.ISSUE):
            # The client never says what it earned: only a trusted backend sets a value.
            raise InsufficientScope(Scope.ISSUE.value)
        action = self._catalog.get(action_type)
        feeds = self._boards.feeds(action.name)
        if not feeds:
            raise NoActiveBoard(f"every board action type '{action.name}' feeds is retired")
        valued = [entry.id for entry in feeds if entry.board.operator.takes_value]
        if valued and value is None:
            raise InvalidValue(
                f"action type '{action.name}' feeds best/latest boards {valued}: the trusted "
                "backend issuing it must send its value"
            )
        if value is not None and not valued:
            raise InvalidValue(
                f"action type '{action.name}' feeds no best or latest board: it takes no value"
            )
        token, ticket = self._signer.issue(
            for_user or principal.user_id, action, self._boards.clock(), value
        )
        return token, ticket, feeds
