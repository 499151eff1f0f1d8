"""TicketSigner.verify on tickets signed with the service's own key but carrying claims of the
wrong shape (a key leak, or a bug in an issuer): every one is refused as not a valid ticket,
never a 500 and never a ticket with odd points. Guards the claim checks in
``scoreboard.actions.tickets`` (``_str``, ``_points``, ``_value``, ``_time`` and the length
cap), which a mutation run found unguarded."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from scoreboard.actions.tickets import AUDIENCE, MAX_TICKET_LENGTH, MAX_VALUE, TicketSigner
from scoreboard.errors import InvalidAction
from scoreboard.keys import load_keys
from tests.helpers import ACTION_SECRET, make_settings

KEYS = load_keys(make_settings("sqlite+aiosqlite://", Path("."), action_secret=ACTION_SECRET))
SIGNER = TicketSigner(KEYS)


def signed(pad: str = "", header_pad: str = "", **changes: Any) -> str:
    now = int(time.time())  # whole seconds: the token's length depends only on the pads
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "jti": str(uuid.uuid4()),
        "sub": "player",
        "typ": "instant",
        "pts": 10,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    if pad:
        claims["pad"] = pad
    claims.update(changes)
    key = KEYS.action_key
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        key.secret,
        algorithm="HS256",
        headers={"kid": key.kid, **({"pad": header_pad} if header_pad else {})},
    )


def test_a_well_formed_ticket_passes_with_its_claims() -> None:
    ticket = SIGNER.verify(signed(pts=1_000_000, val=MAX_VALUE, sub="x" * 36, typ="t" * 64))
    assert (ticket.points, ticket.value, ticket.user_id, ticket.type) == (
        1_000_000,
        MAX_VALUE,
        "x" * 36,
        "t" * 64,
    )
    assert SIGNER.verify(signed(pts=1, val=0)).value == 0
    assert SIGNER.verify(signed()).value is None


@pytest.mark.parametrize(
    "claims",
    [
        {"pts": 0},
        {"pts": -10},
        {"pts": 1_000_001},
        {"pts": True},
        {"pts": "10"},
        {"pts": 10.0},
        {"val": -1},
        {"val": MAX_VALUE + 1},
        {"val": True},
        {"val": "5"},
        {"val": 5.0},
        {"sub": ""},
        {"sub": "x" * 37},
        {"sub": 42},
        {"typ": ""},
        {"typ": "t" * 65},
        {"jti": "j" * 37},
        {"iat": True},
        {"nbf": "2026-12-02T00:00:00Z"},
        {"exp": [1]},
    ],
    ids=lambda claims: ",".join(f"{k}={v!r}"[:24] for k, v in claims.items()),
)
def test_a_ticket_with_a_claim_of_the_wrong_shape_is_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidAction, match="not a valid ticket"):
        SIGNER.verify(signed(**claims))


def test_the_length_cap_is_exact() -> None:
    """A valid ticket of exactly MAX_TICKET_LENGTH characters passes; one more is refused
    before anything is parsed. (Padding a claim grows the payload's base64 by one or two
    characters at a time, so some lengths are skipped; padding the header as well reaches
    every length. The first version padded the claims only, with float timestamps of
    varying length, and missed the cap in one CI run.)"""
    at_cap = next(
        token
        for m in range(4)
        for n in range(MAX_TICKET_LENGTH)
        if len(token := signed(pad="p" * n, header_pad="h" * m)) == MAX_TICKET_LENGTH
    )
    assert SIGNER.verify(at_cap).points == 10
    with pytest.raises(InvalidAction, match="too long"):
        SIGNER.verify(at_cap + "A")
