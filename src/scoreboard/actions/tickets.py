"""Signed, self-contained, single-use action tickets.

A ticket is an HS256 JWT signed with the action key (never the token key), carrying the user,
type, points, window and a random nonce. Issuing writes nothing; the nonce becomes the
UNIQUE ``score_updates.action_id`` when the ticket is used, which makes use exactly-once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from scoreboard.actions.catalog import ActionType
from scoreboard.errors import InvalidAction
from scoreboard.keys import KeyMaterial

AUDIENCE = "scoreboard:action"
MAX_TICKET_LENGTH = 2048
MAX_VALUE = 2**53 - 1  # what a Redis sorted set ranks exactly


@dataclass(frozen=True, slots=True)
class Ticket:
    nonce: str
    user_id: str
    type: str
    points: int
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    value: int | None = None  # for best/latest boards, set by a trusted backend


class TicketSigner:
    def __init__(self, keys: KeyMaterial) -> None:
        self._current = keys.action_key
        self._keys = keys.action_keys

    def issue(
        self, user_id: str, action: ActionType, now: datetime, value: int | None = None
    ) -> tuple[str, Ticket]:
        ticket = Ticket(
            nonce=str(uuid.uuid4()),
            user_id=user_id,
            type=action.name,
            points=action.points,
            issued_at=now,
            not_before=now + timedelta(seconds=action.min_duration),
            expires_at=now + timedelta(seconds=action.ttl),
            value=value,
        )
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "jti": ticket.nonce,
            "sub": user_id,
            "typ": ticket.type,
            "pts": ticket.points,
            "iat": ticket.issued_at.timestamp(),
            "nbf": ticket.not_before.timestamp(),
            "exp": ticket.expires_at.timestamp(),
        }
        if value is not None:
            claims["val"] = value
        token = jwt.encode(
            claims, self._current.secret, algorithm="HS256", headers={"kid": self._current.kid}
        )
        return token, ticket

    def verify(self, token: str) -> Ticket:
        """Check signature and shape only; windows and ownership are the caller's rules."""
        if len(token) > MAX_TICKET_LENGTH:
            raise InvalidAction("the action id is too long")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidAction("the action id was not issued by this service")
            claims: dict[str, Any] = jwt.decode(
                token,
                key.secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={
                    "require": ["jti", "sub", "typ", "pts", "iat", "nbf", "exp"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
            return Ticket(
                nonce=_str(claims["jti"], 36),
                user_id=_str(claims["sub"], 36),
                type=_str(claims["typ"], 64),
                points=_points(claims["pts"]),
                issued_at=_time(claims["iat"]),
                not_before=_time(claims["nbf"]),
                expires_at=_time(claims["exp"]),
                value=_value(claims.get("val")),
            )
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidAction("the action id is not a valid ticket") from exc


def _str(value: object, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise ValueError("bad string claim")
    return value


def _points(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000:
        raise ValueError("bad points claim")
    return value


def _value(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VALUE:
        raise ValueError("bad value claim")
    return value


def _time(value: object) -> datetime:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("bad time claim")
    return datetime.fromtimestamp(value, UTC)
