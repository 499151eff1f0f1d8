"""Attacks on action tickets (forged, stolen, rewritten, backdated, replayed, alone and
in parallel) and mass assignment (fields in a body that would choose the points, the
owner or the audit's author). See tests/security/conftest.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.helpers import (
    ACTIONS,
    JWT_SECRET,
    UPDATE,
    USER_SCOPES,
    ZERO_UUID,
    Api,
    admin_token,
    ago,
    assert_refused,
    bearer,
    clean_log,
    flags_of,
    forge_ticket,
    history_of,
    make_token,
    new_user,
    now_iso,
    on_global,
    post_update,
    problem,
    real_client,
    stored_at,
)
from tests.live.conftest import StartServer
from tests.security.conftest import AppFactory, Shape
from tests.tokens import claims_of, fresh_token, hand_signed, service_kid, tamper

FORGERIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "kid-used-as-the-key": lambda c: hand_signed(
        {"alg": "HS256", "typ": "JWT", "kid": service_kid()}, c, service_kid().encode()
    ),
    "empty-key": lambda c: hand_signed(
        {"alg": "HS256", "typ": "JWT", "kid": service_kid()}, c, b""
    ),
    "guessable-key": lambda c: hand_signed(
        {"alg": "HS256", "typ": "JWT", "kid": service_kid()}, c, b"secret"
    ),
    "kid-path-traversal": lambda c: hand_signed(
        {"alg": "HS256", "typ": "JWT", "kid": "../../scoreboard-data/dev-secrets.json"}, c, b""
    ),
    "no-kid-signed-with-the-jwt-secret": lambda c: hand_signed(
        {"alg": "HS256", "typ": "JWT"}, c, JWT_SECRET.encode()
    ),
    "alg-none-under-the-service-kid": lambda c: hand_signed(
        {"alg": "none", "typ": "JWT", "kid": service_kid()}, c, None
    ),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_a_forged_million_point_ticket_is_refused_and_flagged(api: Api, forgery: str) -> None:
    attacker = new_user()
    claims = {**claims_of(await api.issue(attacker)), "pts": 1_000_000, "typ": "big"}
    before = await api.leaderboard()
    response = await post_update(api, FORGERIES[forgery](claims), api.token(attacker))
    await assert_refused(api, response, 422, "invalid_action", before)
    assert [f["rule"] for f in await flags_of(api, attacker, "forged_ticket")] == ["forged_ticket"]


def _lookalikes(victim: str) -> dict[str, str]:
    return {
        "uppercase": victim.upper(),
        "cyrillic-first-letter": "\u0440" + victim[1:],  # Cyrillic er looks like a Latin p
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) for c in victim),
        "trailing-dot": victim + ".",
    }


@pytest.mark.parametrize(
    "lookalike", ["uppercase", "cyrillic-first-letter", "fullwidth", "trailing-dot"]
)
async def test_a_stolen_ticket_cannot_be_completed_by_a_lookalike_user_id(
    api: Api, lookalike: str
) -> None:
    victim = f"player{uuid.uuid4().hex[:10]}"
    thief = _lookalikes(victim)[lookalike]
    ticket = await api.issue(victim)
    before = await api.leaderboard()
    response = await post_update(api, ticket, make_token(thief))
    await assert_refused(api, response, 403, "action_not_owned", before)
    completed = await api.complete(victim, ticket)
    assert completed.status_code == 200, completed.text


async def test_a_ticket_rewritten_into_a_bigger_action_is_refused_and_flagged(api: Api) -> None:
    """An `instant` ticket (10 points) edited consistently into a `big` one (100 points)."""
    attacker = new_user()
    genuine = await api.issue(attacker)
    assert claims_of(genuine)["pts"] == 10
    before = await api.leaderboard()
    bigger = tamper(genuine, typ="big", pts=100)
    response = await post_update(api, bigger, api.token(attacker))
    await assert_refused(api, response, 422, "invalid_action", before)
    assert len(await flags_of(api, attacker, "forged_ticket")) == 1
    ok = await api.complete(attacker, genuine)
    assert ok.json() == {"success": True, "newScore": 10, "rank": 1, **on_global(10, 1)}


async def test_backdating_the_timestamp_does_not_revive_an_expired_ticket(api: Api) -> None:
    """Issued 120 s ago with a 60 s life; the client claims it finished 30 s after issue."""
    attacker = new_user()
    issued = ago(120)
    ticket = forge_ticket(attacker, issued_at=issued, ttl=60)
    before = await api.leaderboard()
    in_window = (issued + timedelta(seconds=30)).isoformat()
    response = await post_update(api, ticket, api.token(attacker), timestamp=in_window)
    await assert_refused(api, response, 422, "action_expired", before)


async def test_a_client_clock_pushed_forward_cannot_complete_an_action_early(api: Api) -> None:
    """A 2 s minimum duration; the client says it is already 2.5 s later (within the skew and
    inside the ticket's window). Server time decides, and the refusal burns nothing."""
    attacker = new_user()
    ticket = forge_ticket(attacker, min_duration=2, ttl=60)
    before = await api.leaderboard()
    response = await post_update(api, ticket, api.token(attacker), timestamp=now_iso(2.5))
    await assert_refused(api, response, 422, "action_not_ready", before)
    await asyncio.sleep(2.2)
    ok = await post_update(api, ticket, api.token(attacker))
    assert ok.status_code == 200, ok.text
    assert ok.json()["newScore"] == 10


async def test_sequential_replays_with_new_tokens_and_timestamps_are_refused_and_flagged(
    api: Api,
) -> None:
    cheater = new_user()
    ticket = await api.issue(cheater)
    assert (await api.complete(cheater, ticket)).status_code == 200
    before = await api.leaderboard()
    attempts = [
        (api.token(cheater), now_iso()),
        (fresh_token(cheater), now_iso()),
        (fresh_token(cheater, username="someone new"), now_iso(1)),
        (fresh_token(cheater, scopes=(*USER_SCOPES, "actions:issue")), now_iso(2)),
        (api.token(cheater), now_iso(3)),
    ]
    for token, timestamp in attempts:
        response = await post_update(api, ticket, token, timestamp=timestamp)
        await assert_refused(api, response, 409, "action_already_used", before)
    assert before == [{"userId": cheater, "username": f"name-{cheater}", "score": 10, "rank": 1}]
    assert len(await flags_of(api, cheater, "ticket_replay")) == 1


async def test_a_ticket_replayed_on_another_instance_and_after_a_restart_is_refused(
    app_with: AppFactory,
) -> None:
    """Two instances on one database, then a fresh process: the UNIQUE action id holds."""
    cheater = new_user()
    async with app_with() as first, app_with() as second:
        ticket = await first.issue(cheater)
        assert (await first.complete(cheater, ticket)).status_code == 200
        before = await first.leaderboard()
        replay = await post_update(second, ticket, first.token(cheater))
        problem(replay, 409, "action_already_used")
        assert await first.leaderboard() == before
    async with app_with() as restarted:
        replay = await post_update(restarted, ticket, restarted.token(cheater))
        await assert_refused(restarted, replay, 409, "action_already_used", before)
        assert [(e["userId"], e["score"]) for e in before] == [(cheater, 10)]


@pytest.mark.slow
async def test_fifty_parallel_replays_from_fifty_sessions_and_ten_thieves_score_once(
    start_server: StartServer, shape: Shape
) -> None:
    """One ticket, fired at once over separate connections: 50 times by its owner (each with
    a session token of its own and its own timestamp) and 10 times by thieves."""
    server = start_server(shape.database_url, **shape.env)
    owner, thieves = new_user(), [new_user() for _ in range(10)]
    async with real_client(server) as client:
        api = Api(client)
        ticket = await api.issue(owner)

        def attempt(user: str, i: int) -> Any:
            body = {"actionId": ticket, "timestamp": now_iso(i * 0.05)}
            return client.post(UPDATE, json=body, headers=bearer(fresh_token(user)))

        responses = await asyncio.gather(
            *(attempt(owner, i) for i in range(50)), *(attempt(t, 0) for t in thieves)
        )
        by_owner, by_thieves = responses[:50], responses[50:]
        # Exactly one scores. The rest are replays (409) - or, past the default blocking
        # velocity rule of 30 completions a minute, refused before the database (429).
        assert [r.status_code for r in by_owner].count(200) == 1
        for response in by_owner:
            if response.status_code == 409:
                problem(response, 409, "action_already_used")
            elif response.status_code == 429:
                problem(response, 429, "velocity_exceeded")
            else:
                assert response.status_code == 200
        for response in by_thieves:
            problem(response, 403, "action_not_owned")
        assert [(e["userId"], e["score"]) for e in await api.leaderboard()] == [(owner, 10)]
    assert await stored_at(shape.database_url, owner) == (10, [(10, "127.0.0.1")])
    for thief in thieves:
        assert await stored_at(shape.database_url, thief) == (None, [])
    clean_log(server)


@pytest.mark.slow
async def test_parallel_replays_split_across_two_server_processes_score_once(
    start_server: StartServer, postgres_url: str
) -> None:
    first, second = start_server(postgres_url), start_server(postgres_url)
    owner = new_user()
    async with real_client(first) as a, real_client(second) as b:
        ticket = await Api(a).issue(owner)
        token = make_token(owner)
        body = {"actionId": ticket, "timestamp": now_iso()}
        responses = await asyncio.gather(
            *(client.post(UPDATE, json=body, headers=bearer(token)) for client in [a, b] * 25)
        )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 49
    for response in responses:
        if response.status_code == 409:
            problem(response, 409, "action_already_used")
    assert await stored_at(postgres_url, owner) == (10, [(10, "127.0.0.1")])
    clean_log(first)
    clean_log(second)


# =========================================================================== mass assignment


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"score": 1_000_000}, id="score"),
        pytest.param({"points": 1_000_000}, id="points"),
        pytest.param({"pts": 1_000_000}, id="pts"),
        pytest.param({"userId": "RIVAL"}, id="userId"),
        pytest.param({"user_id": "RIVAL"}, id="user_id"),
        pytest.param({"type": "big"}, id="type"),
        pytest.param({"ticket": {"pts": 1_000_000}}, id="nested"),
    ],
)
async def test_client_chosen_points_or_owner_in_the_update_body_are_refused(
    api: Api, extra: dict[str, Any]
) -> None:
    """A genuine ticket plus fields that would decide the points or the beneficiary. The
    refusal burns nothing, names the field, and never echoes the value."""
    attacker, rival = new_user(), new_user()
    await api.score(rival)
    ticket = await api.issue(attacker)
    before = await api.leaderboard()
    body = {"actionId": ticket, "timestamp": now_iso(), **extra}
    body = {k: (rival if v == "RIVAL" else v) for k, v in body.items()}
    response = await api.client.post(UPDATE, json=body, headers=bearer(api.token(attacker)))
    refusal = await assert_refused(api, response, 400, "validation_error", before)
    field = next(iter(extra))
    assert any(field in error["message"] for error in refusal["errors"]), refusal
    assert "1000000" not in response.text
    assert rival not in response.text
    ok = await api.complete(attacker, ticket)
    assert ok.json()["newScore"] == 10
    assert {e["userId"]: e["score"] for e in await api.leaderboard()} == {rival: 10, attacker: 10}


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("field", "status", "code"),
    [
        pytest.param("userId", 403, "insufficient_scope", id="userId"),
        pytest.param("user_id", 400, "validation_error", id="user_id"),
        pytest.param("sub", 400, "validation_error", id="sub"),
        pytest.param("forUser", 400, "validation_error", id="forUser"),
    ],
)
async def test_a_player_cannot_mint_tickets_for_an_accomplice(
    api: Api, field: str, status: int, code: str
) -> None:
    """Only a backend holding actions:issue may name the ticket's user."""
    player, accomplice = new_user(), new_user()
    before = await api.leaderboard()
    response = await api.client.post(
        ACTIONS, json={"type": "big", field: accomplice}, headers=bearer(api.token(player))
    )
    body = await assert_refused(api, response, status, code, before)
    if code == "insufficient_scope":
        assert body["requiredScope"] == "actions:issue"


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("route", "body"),
    [
        pytest.param(
            "adjust", {"points": 5, "reason": "goodwill", "userId": "OTHER"}, id="adjust-userId"
        ),
        pytest.param(
            "adjust", {"points": 5, "reason": "goodwill", "adminId": "x"}, id="adjust-adminId"
        ),
        pytest.param("reset", {"reason": "clean slate", "score": 1_000_000}, id="reset-score"),
        pytest.param("suspend", {"reason": "cheating", "suspendedBy": "rule:x"}, id="suspend-by"),
        pytest.param("unsuspend", {"reason": "appeal", "by": "other-admin"}, id="unsuspend-by"),
        pytest.param("resolve", {"reason": "fine", "resolvedBy": "other-admin"}, id="resolve-by"),
    ],
)
async def test_extra_fields_in_admin_bodies_are_refused(
    api: Api, route: str, body: dict[str, Any]
) -> None:
    """Even an admin cannot smuggle a different target or forge the audit's author."""
    victim, other = new_user(), new_user()
    await api.score(victim)
    before = await api.leaderboard()
    path = (
        f"/api/admin/flags/{ZERO_UUID}/resolve"
        if route == "resolve"
        else f"/api/admin/users/{victim}/{route}"
    )
    payload = {k: (other if v == "OTHER" else v) for k, v in body.items()}
    response = await api.client.post(path, json=payload, headers=bearer(admin_token()))
    await assert_refused(api, response, 400, "validation_error", before)
    history = await history_of(api, victim)
    assert (history["score"], history["suspended"], len(history["updates"])) == (10, False, 1)
