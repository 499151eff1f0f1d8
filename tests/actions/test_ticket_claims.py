"""TicketSigner.verify on tickets signed with the service's own key but carrying claims of the
wrong shape (a key leak, or a bug in an issuer): every one is refused as not a valid ticket,
never a 500 and never a ticket with odd points. Guards the claim checks in
``scoreboard.actions.tickets`` (``_str``, ``_points``, ``_value``, ``_time`` and the length
cap), which a mutation run found unguarded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoreboard.actions.tickets import AUDIENCE, MAX_TICKET_LENGTH, MAX_VALUE, Ticket, TicketSigner
from scoreboard.errors import InvalidAction
from scoreboard.keys import load_keys
from tests.helpers import ACTION_SECRET, make_settings
from tests.tokens import hand_signed

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


# -- the fast path: tickets in exactly our form are checked without PyJWT --------------------

PYJWT_ONLY = TicketSigner(KEYS)
PYJWT_ONLY._ours = {}  # every ticket through PyJWT: the reference the fast path must match


def outcome(signer: TicketSigner, token: str) -> object:
    try:
        return signer.verify(token)
    except InvalidAction as refusal:
        return refusal.detail


def test_a_ticket_this_service_issued_is_verified_without_pyjwt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards the fast path's existence (PyJWT cost a tenth of an update's CPU)."""
    token = signed()

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("PyJWT was asked")

    monkeypatch.setattr(jwt, "decode", refuse)
    assert SIGNER.verify(token).points == 10


def _variants() -> dict[str, str]:
    good = signed()
    header, payload, signature = good.split(".")
    other = signed(sub="other").split(".")[1]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B")
    ours = jwt.decode(good, options={"verify_signature": False})
    kid = KEYS.action_key.kid
    mac = hmac.new(b"guess", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    guessed = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return {
        "issued": good,
        "payload-of-another-ticket": f"{header}.{other}.{signature}",
        "signature-flipped": f"{header}.{payload}.{flipped}{signature[-1]}",
        "signature-padded": f"{good}==",
        "signature-plus-for-minus": good.replace("-", "+") if "-" in good else good + "+",
        "fourth-segment": f"{good}.e30",
        "no-signature": f"{header}.{payload}",
        "empty-payload": f"{header}..{signature}",
        "audience-list": signed(aud=[AUDIENCE]),
        "other-audience": signed(aud="scoreboard:other"),
        "no-audience": signed(aud=None),
        "no-nonce": signed(jti=None),
        "header-padded": signed(header_pad="h"),
        "alg-none": hand_signed({"alg": "none", "typ": "JWT", "kid": kid}, ours, None),
        "our-header-another-key": f"{header}.{payload}.{guessed}",
    }


FORGED = ("payload-of-another-ticket", "signature-flipped", "alg-none", "our-header-another-key")


@pytest.mark.parametrize("name", list(_variants()))
def test_the_fast_path_decides_as_pyjwt_does(name: str) -> None:
    """Every variant of a ticket gets the same answer with and without the fast path:
    guards against it accepting what PyJWT refuses (a bad signature, another audience,
    a missing claim) or refusing what PyJWT accepts."""
    token = _variants()[name]
    assert outcome(SIGNER, token) == outcome(PYJWT_ONLY, token)
    if name == "issued":
        assert isinstance(outcome(SIGNER, token), Ticket)
    if name in FORGED:
        assert not isinstance(outcome(SIGNER, token), Ticket)


@given(position=st.integers(min_value=0), char=st.sampled_from("AZaz09-_+/=.~ "))
@settings(max_examples=300, deadline=None)
def test_any_one_character_changed_is_decided_as_pyjwt_does(position: int, char: str) -> None:
    token = TOKEN
    i = position % len(token)
    changed = token[:i] + char + token[i + 1 :]
    decided = outcome(SIGNER, changed)
    assert decided == outcome(PYJWT_ONLY, changed)
    if changed != token and isinstance(decided, Ticket):  # only a no-op change may pass
        assert decided == SIGNER.verify(token)


TOKEN = signed()
