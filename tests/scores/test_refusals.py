"""Every way the write path can be refused, on SQLite and PostgreSQL alike.

Each refusal must be an RFC 9457 problem (``application/problem+json``) with the documented
status and stable ``code``, never a 500, and must leave every score exactly as it was.
Refusals decided before any storage is touched (body and query validation, body size,
routing, scopes, the checks of a ticket request) are marked ``one_backend``: SQLite only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest

from tests.helpers import (
    ACTIONS,
    JWT_SECRET,
    UPDATE,
    Api,
    ago,
    assert_refused,
    bearer,
    forge_ticket,
    make_token,
    new_user,
    now_iso,
    on_global,
)
from tests.tokens import claims_of, hand_signed, service_kid, tamper

OTHER_SECRET = "other-action-key-that-is-long-enough-9876543210"
WRONG_JWT_SECRET = "wrong-jwt-key-that-is-long-enough-9876543210"


# --------------------------------------------------------------------------- helpers


async def post_update(
    api: Api,
    action_id: Any,
    *,
    token: str | None = None,
    user: str | None = None,
    timestamp: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Unlike tests/helpers.py's post_update: any JSON as the id and timestamp, and a token
    or a user (whose token the Api holds) or no one (a new user)."""
    if headers is None:
        headers = bearer(token or api.token(user or new_user()))
    body = {"actionId": action_id, "timestamp": now_iso() if timestamp is None else timestamp}
    return await api.client.post(UPDATE, json=body, headers=headers)


# --------------------------------------------------------------------------- forged tickets


async def test_a_forged_ticket_is_a_working_control(api: Api) -> None:
    """forge_ticket with the service's own key is accepted: the refusals below are real."""
    alice = new_user()
    response = await post_update(api, forge_ticket(alice), user=alice)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "newScore": 10, "rank": 1, **on_global(10, 1)}


async def test_a_ticket_signed_with_another_action_secret_is_refused(api: Api) -> None:
    alice = new_user()
    ticket = forge_ticket(alice, action_secret=OTHER_SECRET)
    response = await post_update(api, ticket, user=alice)
    await assert_refused(api, response, 422, "invalid_action")


async def test_a_ticket_with_the_right_kid_but_a_wrong_signature_is_refused(api: Api) -> None:
    alice = new_user()
    genuine = await api.issue(alice)
    claims = claims_of(genuine)
    forged = jwt.encode(claims, OTHER_SECRET, algorithm="HS256", headers={"kid": service_kid()})
    response = await post_update(api, forged, user=alice)
    await assert_refused(api, response, 422, "invalid_action")


async def test_an_unsigned_alg_none_ticket_is_refused(api: Api) -> None:
    alice = new_user()
    claims = claims_of(await api.issue(alice))
    unsigned = hand_signed({"alg": "none", "typ": "JWT", "kid": service_kid()}, claims, None)
    response = await post_update(api, unsigned, user=alice)
    await assert_refused(api, response, 422, "invalid_action")


async def test_a_ticket_signed_with_the_jwt_secret_is_refused(api: Api) -> None:
    """The token key must never be able to mint tickets."""
    alice = new_user()
    claims = claims_of(await api.issue(alice))
    forged = jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": service_kid()})
    response = await post_update(api, forged, user=alice)
    await assert_refused(api, response, 422, "invalid_action")


@pytest.mark.parametrize(
    "action_id",
    [
        pytest.param("garbage", id="word"),
        pytest.param("a.b.c", id="three-dots"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9.e30.", id="empty-signature"),
        pytest.param("x" * 2048, id="max-length-garbage"),
        pytest.param("\u00e9\u00e8\u4e2d", id="non-ascii"),
    ],
)
async def test_a_garbage_action_id_is_refused(api: Api, action_id: str) -> None:
    response = await post_update(api, action_id)
    await assert_refused(api, response, 422, "invalid_action")


async def test_another_users_ticket_is_refused_and_not_burnt(api: Api) -> None:
    alice, bob = new_user(), new_user()
    bobs_ticket = await api.issue(bob)
    response = await post_update(api, bobs_ticket, user=alice)
    await assert_refused(api, response, 403, "action_not_owned")
    # The refusal did not consume it: its owner can still complete it.
    mine = await post_update(api, bobs_ticket, user=bob)
    assert mine.status_code == 200, mine.text
    assert mine.json()["newScore"] == 10


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"pts": 1_000_000}, id="points"),
        pytest.param({"typ": "big"}, id="type"),
        pytest.param({"exp": 4_102_444_800}, id="expiry"),
        pytest.param({"jti": "00000000-0000-0000-0000-000000000000"}, id="nonce"),
    ],
)
async def test_a_tampered_ticket_is_refused(api: Api, changes: dict[str, Any]) -> None:
    alice = new_user()
    genuine = await api.issue(alice)
    response = await post_update(api, tamper(genuine, **changes), user=alice)
    await assert_refused(api, response, 422, "invalid_action")
    # The untouched ticket still works, and is worth what the catalog says.
    ok = await post_update(api, genuine, user=alice)
    assert ok.status_code == 200, ok.text
    assert ok.json()["newScore"] == 10


async def test_a_ticket_rewritten_to_another_owner_is_refused(api: Api) -> None:
    alice, bob = new_user(), new_user()
    stolen = tamper(await api.issue(bob), sub=alice)
    response = await post_update(api, stolen, user=alice)
    await assert_refused(api, response, 422, "invalid_action")


async def test_an_expired_ticket_is_refused(api: Api) -> None:
    alice = new_user()
    ticket = forge_ticket(alice, issued_at=ago(120), ttl=60)
    response = await post_update(api, ticket, user=alice)
    await assert_refused(api, response, 422, "action_expired")


async def test_a_ticket_before_its_not_before_is_refused(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice, "slow")
    response = await post_update(api, ticket, user=alice)
    await assert_refused(api, response, 422, "action_not_ready")


async def test_a_ticket_issued_5s_ago_with_10s_minimum_is_not_ready(api: Api) -> None:
    """notBefore is 5 s in the future: refused even though a timestamp of 'now' is in skew."""
    alice = new_user()
    ticket = forge_ticket(alice, issued_at=ago(5), min_duration=10, ttl=60)
    response = await post_update(api, ticket, user=alice, timestamp=now_iso())
    await assert_refused(api, response, 422, "action_not_ready")


@pytest.mark.one_backend
async def test_an_unknown_action_type_is_refused_on_issue(api: Api) -> None:
    alice = new_user()
    response = await api.client.post(
        ACTIONS, json={"type": "no-such-type"}, headers=bearer(api.token(alice))
    )
    body = await assert_refused(api, response, 422, "unknown_action_type")
    assert body["knownTypes"] == ["big", "instant", "slow"]


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "action_type",
    [pytest.param("", id="empty"), pytest.param("x" * 65, id="too-long")],
)
async def test_an_invalid_action_type_name_is_a_validation_error(
    api: Api, action_type: str
) -> None:
    response = await api.client.post(
        ACTIONS, json={"type": action_type}, headers=bearer(api.token(new_user()))
    )
    await assert_refused(api, response, 400, "validation_error")


# --------------------------------------------------------------------------- bearer tokens

TokenCase = Callable[[str], dict[str, str]]


def _none_token(user: str) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": user, "exp": now + 600, "scope": "leaderboard:read scores:write"}
    return hand_signed({"alg": "none", "typ": "JWT"}, claims, None)


def _hs512_token(user: str) -> str:
    """Signed with the right secret, but with an algorithm the service does not use."""
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": user, "exp": now + 600, "scope": "leaderboard:read scores:write"}
    header = {"alg": "HS512", "typ": "JWT"}
    return hand_signed(header, claims, JWT_SECRET.encode(), hashlib.sha512)


INVALID_TOKENS: dict[str, TokenCase] = {
    "missing-authorization": lambda user: {},
    "basic-scheme": lambda user: {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "token-without-scheme": lambda user: {"Authorization": make_token(user)},
    "bearer-without-token": lambda user: {"Authorization": "Bearer "},
    "alg-none": lambda user: bearer(_none_token(user)),
    "alg-hs512": lambda user: bearer(_hs512_token(user)),
    "wrong-secret": lambda user: bearer(make_token(user, secret=WRONG_JWT_SECRET)),
    "expired": lambda user: bearer(make_token(user, ttl=-120)),
    "not-yet-valid": lambda user: bearer(
        make_token(user, nbf=int(datetime.now(UTC).timestamp()) + 300)
    ),
    "missing-exp": lambda user: bearer(make_token(user, exp=None)),
    "missing-sub": lambda user: bearer(make_token(user, sub=None)),
    "sub-too-long": lambda user: bearer(make_token("u" * 37)),
    "sub-not-printable": lambda user: bearer(make_token("bad\nuser")),
    "garbage": lambda user: bearer("not-a-jwt"),
    "oversized": lambda user: bearer(make_token(user, padding="p" * 9000)),
    "action-ticket-as-token": lambda user: bearer(forge_ticket(user)),
}


@pytest.mark.parametrize("case", list(INVALID_TOKENS), ids=list(INVALID_TOKENS))
async def test_an_invalid_token_cannot_update_a_score(api: Api, case: str) -> None:
    alice = new_user()
    ticket = await api.issue(alice)  # a genuine ticket: only the token is wrong
    response = await post_update(api, ticket, headers=INVALID_TOKENS[case](alice))
    await assert_refused(api, response, 401, "invalid_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", list(INVALID_TOKENS), ids=list(INVALID_TOKENS))
async def test_an_invalid_token_cannot_issue_an_action(api: Api, case: str) -> None:
    response = await api.client.post(ACTIONS, json={}, headers=INVALID_TOKENS[case](new_user()))
    await assert_refused(api, response, 401, "invalid_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_ticket_owners_own_ticket_is_no_bearer_token(api: Api) -> None:
    """A genuine, freshly issued ticket presented as the token must not authenticate."""
    alice = new_user()
    ticket = await api.issue(alice)
    response = await post_update(api, ticket, token=ticket)
    await assert_refused(api, response, 401, "invalid_token")


@pytest.mark.one_backend
async def test_a_token_without_scores_write_cannot_update(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    reader = make_token(alice, scopes=("leaderboard:read",))
    response = await post_update(api, ticket, token=reader)
    body = await assert_refused(api, response, 403, "insufficient_scope")
    assert body["requiredScope"] == "scores:write"


@pytest.mark.one_backend
async def test_a_read_only_token_cannot_issue(api: Api) -> None:
    reader = make_token(new_user(), scopes=("leaderboard:read",))
    response = await api.client.post(ACTIONS, json={}, headers=bearer(reader))
    body = await assert_refused(api, response, 403, "insufficient_scope")
    assert body["requiredScope"] == "scores:write"


@pytest.mark.one_backend
async def test_a_scope_that_only_looks_like_scores_write_grants_nothing(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    lookalike = make_token(alice, scopes=("scores:write:extra", "SCORES:WRITE", "scores"))
    response = await post_update(api, ticket, token=lookalike)
    await assert_refused(api, response, 403, "insufficient_scope")


# --------------------------------------------------------------------------- timestamps


async def test_a_timestamp_more_than_the_skew_in_the_future_is_refused(api: Api) -> None:
    """+45 s lies inside the ticket's 60 s window: only the clock-skew rule refuses it."""
    alice = new_user()
    ticket = await api.issue(alice)
    response = await post_update(api, ticket, user=alice, timestamp=now_iso(45))
    await assert_refused(api, response, 422, "timestamp_out_of_window")


async def test_a_timestamp_more_than_the_skew_in_the_past_is_refused(api: Api) -> None:
    """-45 s lies inside this ticket's window: only the clock-skew rule refuses it."""
    alice = new_user()
    ticket = forge_ticket(alice, issued_at=ago(50), ttl=120)
    response = await post_update(api, ticket, user=alice, timestamp=now_iso(-45))
    await assert_refused(api, response, 422, "timestamp_out_of_window")


async def test_a_timestamp_before_not_before_is_refused_even_within_the_skew(api: Api) -> None:
    """Issued 15 s ago with a 10 s minimum: notBefore was 5 s ago, so the ticket may be
    completed now, but not with a timestamp (10 s ago) from before notBefore."""
    alice = new_user()
    ticket = forge_ticket(alice, issued_at=ago(15), min_duration=10, ttl=60)
    response = await post_update(api, ticket, user=alice, timestamp=now_iso(-10))
    await assert_refused(api, response, 422, "timestamp_out_of_window")
    ok = await post_update(api, ticket, user=alice, timestamp=now_iso())
    assert ok.status_code == 200, ok.text


async def test_a_timestamp_before_the_ticket_was_issued_is_refused(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    response = await post_update(api, ticket, user=alice, timestamp=now_iso(-10))
    await assert_refused(api, response, 422, "timestamp_out_of_window")


async def test_a_timestamp_after_the_ticket_expires_is_refused_even_within_skew(
    api: Api,
) -> None:
    """Issued 50 s ago with a 60 s ttl: it expires in 10 s; a timestamp in 20 s is too late."""
    alice = new_user()
    ticket = forge_ticket(alice, issued_at=ago(50), ttl=60)
    response = await post_update(api, ticket, user=alice, timestamp=now_iso(20))
    await assert_refused(api, response, 422, "timestamp_out_of_window")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(datetime.now(UTC).replace(tzinfo=None).isoformat(), id="naive"),
        pytest.param("yesterday", id="word"),
        pytest.param("", id="empty"),
        pytest.param("2024-13-45T99:00:00Z", id="impossible"),
        pytest.param(datetime.now(UTC).date().isoformat(), id="date-only"),
        pytest.param(None, id="null"),
        pytest.param(["2024-01-01T00:00:00Z"], id="list"),
    ],
)
async def test_a_timestamp_that_is_not_an_aware_iso_datetime_is_a_validation_error(
    api: Api, timestamp: Any
) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    response = await api.client.post(
        UPDATE,
        json={"actionId": ticket, "timestamp": timestamp},
        headers=bearer(api.token(alice)),
    )
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
async def test_a_numeric_unix_timestamp_is_a_validation_error(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    response = await api.client.post(
        UPDATE,
        json={"actionId": ticket, "timestamp": datetime.now(UTC).timestamp()},
        headers=bearer(api.token(alice)),
    )
    await assert_refused(api, response, 400, "validation_error")


# --------------------------------------------------------------------------- bodies


async def _raw_update(api: Api, user: str, content: bytes) -> httpx.Response:
    headers = {**bearer(api.token(user)), "content-type": "application/json"}
    return await api.client.post(UPDATE, content=content, headers=headers)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"null", id="null"),
        pytest.param(b'"a string"', id="string"),
        pytest.param(b"[]", id="empty-array"),
        pytest.param(b'[{"actionId": "x", "timestamp": "2024-01-01T00:00:00Z"}]', id="array"),
        pytest.param(b'{"actionId": "x", "timestamp": ', id="truncated"),
        pytest.param(b"[" * 900 + b"]" * 900, id="nested-900"),
        pytest.param(
            b"[" * 1000 + b"]" * 1000,
            id="nested-1000",
        ),
        pytest.param(b'{"actionId": "x", "timestamp": "2024-01-01T00:00:00Z"} {}', id="two-docs"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_validation_error(
    api: Api, content: bytes
) -> None:
    response = await _raw_update(api, new_user(), content)
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
async def test_a_body_with_invalid_utf8_is_a_validation_error(api: Api) -> None:
    content = b'{"actionId": "\xff\xfe", "timestamp": "2024-01-01T00:00:00Z"}'
    response = await _raw_update(api, new_user(), content)
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
async def test_a_missing_action_id_is_a_validation_error(api: Api) -> None:
    alice = new_user()
    response = await api.client.post(
        UPDATE, json={"timestamp": now_iso()}, headers=bearer(api.token(alice))
    )
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
async def test_a_missing_timestamp_is_a_validation_error(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    response = await api.client.post(
        UPDATE, json={"actionId": ticket}, headers=bearer(api.token(alice))
    )
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"score": 1_000_000}, id="score"),
        pytest.param({"points": 1_000_000}, id="points"),
        pytest.param({"userId": "someone-else"}, id="userId"),
        pytest.param({"newScore": 5}, id="newScore"),
        pytest.param({"action_id": "snake"}, id="snake-case-duplicate"),
    ],
)
async def test_mass_assignment_on_update_is_refused(api: Api, extra: dict[str, Any]) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    body = {"actionId": ticket, "timestamp": now_iso(), **extra}
    response = await api.client.post(UPDATE, json=body, headers=bearer(api.token(alice)))
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"points": 1_000_000}, id="points"),
        pytest.param({"score": 5}, id="score"),
        pytest.param({"minDuration": 0}, id="minDuration"),
        pytest.param({"ttl": 86_400}, id="ttl"),
    ],
)
async def test_mass_assignment_on_issue_is_refused(api: Api, extra: dict[str, Any]) -> None:
    body = {"type": "instant", **extra}
    response = await api.client.post(ACTIONS, json=body, headers=bearer(api.token(new_user())))
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "action_id",
    [
        pytest.param("x" * 2049, id="too-long"),
        pytest.param("", id="empty"),
        pytest.param(12345, id="number"),
        pytest.param(None, id="null"),
        pytest.param({"jti": "x"}, id="object"),
    ],
)
async def test_an_ill_typed_action_id_is_a_validation_error(api: Api, action_id: Any) -> None:
    response = await post_update(api, action_id)
    await assert_refused(api, response, 400, "validation_error")


@pytest.mark.one_backend
async def test_an_oversize_body_is_refused_with_413(api: Api) -> None:
    alice = new_user()
    ticket = await api.issue(alice)
    body = json.dumps({"actionId": ticket, "timestamp": now_iso(), "pad": "p" * 9000}).encode()
    assert len(body) > 8192
    response = await _raw_update(api, alice, body)
    await assert_refused(api, response, 413, "payload_too_large")


@pytest.mark.one_backend
async def test_an_oversize_issue_body_is_refused_with_413(api: Api) -> None:
    body = json.dumps({"type": "t" * 9000}).encode()
    headers = {**bearer(api.token(new_user())), "content-type": "application/json"}
    response = await api.client.post(ACTIONS, content=body, headers=headers)
    await assert_refused(api, response, 413, "payload_too_large")


# --------------------------------------------------------------------------- routing


@pytest.mark.one_backend
@pytest.mark.parametrize("authenticated", [True, False], ids=["with-token", "anonymous"])
@pytest.mark.parametrize("path", ["/api/nope", "/nope", "/api/scores", "/api/scores/update/x"])
async def test_an_unknown_route_is_a_404_problem(api: Api, path: str, authenticated: bool) -> None:
    headers = bearer(api.token(new_user())) if authenticated else {}
    response = await api.client.get(path, headers=headers)
    await assert_refused(api, response, 404, "not_found")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", UPDATE, "POST"),
        ("PUT", UPDATE, "POST"),
        ("DELETE", UPDATE, "POST"),
        ("GET", ACTIONS, "POST"),
        ("POST", "/api/leaderboard", "GET"),
    ],
)
async def test_a_wrong_method_is_a_405_problem(
    api: Api, method: str, path: str, allowed: str
) -> None:
    response = await api.client.request(method, path, headers=bearer(api.token(new_user())))
    await assert_refused(api, response, 405, "method_not_allowed")
    assert allowed in response.headers["allow"]


@pytest.mark.one_backend
@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", ""])
async def test_an_out_of_range_leaderboard_limit_is_a_validation_error(
    api: Api, limit: str
) -> None:
    response = await api.client.get(
        "/api/leaderboard", params={"limit": limit}, headers=bearer(api.token(new_user()))
    )
    await assert_refused(api, response, 400, "validation_error")


async def test_the_leaderboard_limit_bounds_are_inclusive(api: Api) -> None:
    """The control for the test above: 1 and 100 are accepted."""
    for limit in ("1", "100"):
        response = await api.client.get(
            "/api/leaderboard", params={"limit": limit}, headers=bearer(api.token(new_user()))
        )
        assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- service path


def service_token(*scopes: str) -> str:
    return make_token("game-backend", username="Game backend", scopes=scopes)


async def test_a_service_token_issues_for_another_user_and_the_ticket_is_theirs(
    api: Api,
) -> None:
    bob = new_user()
    issued = await api.client.post(
        ACTIONS,
        json={"type": "big", "userId": bob},
        headers=bearer(service_token("actions:issue")),
    )
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["type"] == "big"
    assert body["points"] == 100
    assert claims_of(body["actionId"])["sub"] == bob

    # The service itself may not complete it: it lacks scores:write.
    by_service = await post_update(api, body["actionId"], token=service_token("actions:issue"))
    await assert_refused(api, by_service, 403, "insufficient_scope")
    # Nor may a service that can also write, since the ticket is bob's.
    both = service_token("actions:issue", "scores:write")
    stolen = await post_update(api, body["actionId"], token=both)
    await assert_refused(api, stolen, 403, "action_not_owned")

    completed = await post_update(api, body["actionId"], user=bob)
    assert completed.status_code == 200, completed.text
    assert completed.json() == {"success": True, "newScore": 100, "rank": 1, **on_global(100, 1)}
    board = await api.leaderboard()
    assert [(e["userId"], e["score"]) for e in board] == [(bob, 100)]


@pytest.mark.one_backend
async def test_a_user_token_cannot_issue_for_someone_else(api: Api) -> None:
    alice, bob = new_user(), new_user()
    response = await api.client.post(
        ACTIONS, json={"userId": bob}, headers=bearer(api.token(alice))
    )
    body = await assert_refused(api, response, 403, "insufficient_scope")
    assert body["requiredScope"] == "actions:issue"


async def test_a_user_token_may_name_itself_as_user_id(api: Api) -> None:
    alice = new_user()
    response = await api.client.post(
        ACTIONS, json={"userId": alice}, headers=bearer(api.token(alice))
    )
    assert response.status_code == 201, response.text
    assert claims_of(response.json()["actionId"])["sub"] == alice


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("", id="empty"),
        pytest.param("u" * 37, id="too-long"),
        pytest.param("has space", id="space"),
        pytest.param("new\nline", id="control"),
        pytest.param(42, id="number"),
    ],
)
async def test_a_service_cannot_issue_for_an_invalid_user_id(api: Api, user_id: Any) -> None:
    response = await api.client.post(
        ACTIONS, json={"userId": user_id}, headers=bearer(service_token("actions:issue"))
    )
    await assert_refused(api, response, 400, "validation_error")
