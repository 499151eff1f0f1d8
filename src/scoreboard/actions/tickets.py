"""Signed, self-contained, single-use action tickets.

A ticket is an HS256 JWT signed with the action key (never the token key), carrying the user,
type, points, window and a random nonce. Issuing writes nothing; the nonce becomes the
UNIQUE ``score_updates.action_id`` when the ticket is used, which makes use exactly-once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
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


REQUIRED = ("jti", "sub", "typ", "pts", "iat", "nbf", "exp")


class TicketSigner:
    def __init__(self, keys: KeyMaterial) -> None:
        self._current = keys.action_key
        self._keys = keys.action_keys
        # The header segment this service writes under each key, byte for byte: a ticket
        # carrying one of them is checked without PyJWT (its cost was a tenth of an update).
        self._ours = {
            jwt.encode({}, key.secret, algorithm="HS256", headers={"kid": kid}).split(".")[0]: key
            for kid, key in self._keys.items()
        }

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
        claims = self._ours_verified(token)
        try:
            if claims is None:
                claims = self._decoded(token)
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

    def _ours_verified(self, token: str) -> dict[str, Any] | None:
        """The claims of a ticket in exactly the form this service issues (our header, a
        valid signature, strict base64url, the audience, every claim present), or None: then
        PyJWT decides, so this path can only accept what PyJWT would."""
        header, _, rest = token.partition(".")
        key = self._ours.get(header)
        payload, _, signature = rest.partition(".")
        if key is None or not payload or "." in signature:
            return None
        try:
            mac = _b64(signature)
            if not hmac.compare_digest(
                mac, hmac.new(key.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            ):
                return None
            claims = json.loads(_b64(payload))
        except (binascii.Error, ValueError, UnicodeError):
            return None
        if not isinstance(claims, dict) or claims.get("aud") != AUDIENCE:
            return None
        if any(claims.get(name) is None for name in REQUIRED):
            return None
        return claims

    def _decoded(self, token: str) -> dict[str, Any]:
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
                "require": list(REQUIRED),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
        return claims


def _b64(segment: str) -> bytes:
    """Strict base64url without padding (a character outside the alphabet is an error)."""
    if len(segment) % 4 == 1 or any(c in segment for c in "+/="):
        raise binascii.Error("not unpadded base64url")
    padded = segment.encode("ascii") + b"=" * (-len(segment) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


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
