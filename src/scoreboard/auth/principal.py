from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    READ = "leaderboard:read"
    WRITE = "scores:write"
    ISSUE = "actions:issue"
    SUBMIT = "scores:submit"  # a trusted game server completing its players' tickets
    ADMIN = "scores:admin"


DEFAULT_USER_SCOPES = (Scope.READ, Scope.WRITE)


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller, built from a token's claims."""

    user_id: str
    username: str
    scopes: frozenset[str]
    expires_at: float

    def has(self, scope: Scope) -> bool:
        return scope.value in self.scopes
