"""Attacks through POST /api/scores/batch: forged and stolen tickets hidden among genuine
ones, one ticket a hundred times, bodies too big to hold, and service tokens without the
``scores:submit`` scope. A batch answers 200 with one result per item, so each attack checks
the refused items' codes, that the genuine items (and nothing else) scored, and the audit
rows. See tests/security/conftest.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import (
    BATCH,
    Api,
    assert_refused,
    bearer,
    database_of,
    flags_of,
    forge_ticket,
    make_token,
    new_user,
    now_iso,
    post_batch,
    stored_at,
)
from tests.security.test_ticket_attacks import FORGERIES
from tests.tokens import claims_of


def outcomes(response: Any) -> list[tuple[bool, str | None]]:
    """Each item as (success, refusal code), after checking the batch was processed."""
    assert response.status_code == 200, response.text
    return [(r["success"], r.get("code")) for r in response.json()["results"]]


def scores(board: list[dict[str, Any]]) -> dict[str, int]:
    return {entry["userId"]: entry["score"] for entry in board}


async def test_forged_tickets_hidden_in_a_batch_are_refused_item_by_item_and_flagged(
    api: Api,
) -> None:
    attacker = new_user()
    genuine = await api.issue(attacker)
    claims = {**claims_of(await api.issue(attacker)), "pts": 1_000_000, "typ": "big"}
    forged = [forge(claims) for forge in FORGERIES.values()]
    response = await post_batch(api, api.token(attacker), [*forged, genuine])
    assert outcomes(response) == [(False, "invalid_action")] * len(forged) + [(True, None)]
    assert scores(await api.leaderboard()) == {attacker: 10}
    assert await stored_at(database_of(api), attacker) == (10, [(10, None)])
    assert [f["rule"] for f in await flags_of(api, attacker, "forged_ticket")] == ["forged_ticket"]


async def test_a_user_token_cannot_smuggle_another_users_ticket_into_a_batch(api: Api) -> None:
    thief, victim = new_user(), new_user()
    mine = await api.issue(thief)
    stolen = [await api.issue(victim, "big") for _ in range(3)]
    response = await post_batch(api, api.token(thief), [stolen[0], mine, *stolen[1:]])
    assert outcomes(response) == [
        (False, "action_not_owned"),
        (True, None),
        (False, "action_not_owned"),
        (False, "action_not_owned"),
    ]
    assert scores(await api.leaderboard()) == {thief: 10}
    assert await stored_at(database_of(api), victim) == (None, [])
    assert len(await flags_of(api, thief, "forged_ticket")) == 1
    # The refusals burnt nothing: the victim still completes every ticket.
    mine_again = await post_batch(api, api.token(victim), stolen)
    assert outcomes(mine_again) == [(True, None)] * 3
    assert scores(await api.leaderboard()) == {victim: 300, thief: 10}


async def test_one_ticket_a_hundred_times_in_a_batch_scores_once_and_spends_one_action(
    api: Api,
) -> None:
    cheater = new_user()
    ticket = await api.issue(cheater)
    response = await post_batch(api, api.token(cheater), [ticket] * 100)
    assert outcomes(response) == [(True, None)] + [(False, "action_already_used")] * 99
    assert response.json()["results"][0]["newScore"] == 10
    assert await stored_at(database_of(api), cheater) == (10, [(10, None)])
    assert len(await flags_of(api, cheater, "ticket_replay")) == 1
    # The copies never reached the velocity rules (30 actions a minute): a fresh ticket
    # still scores.
    assert (await api.score(cheater))["newScore"] == 20


@pytest.mark.one_backend
async def test_a_batch_body_too_big_to_hold_is_refused_before_it_is_read(api: Api) -> None:
    attacker = new_user()
    before = await api.leaderboard()
    oversized = json.dumps(
        {"updates": [{"actionId": "x" * 2048, "timestamp": now_iso()} for _ in range(200)]}
    ).encode()
    assert len(oversized) > 256 * 1024
    headers = {**bearer(api.token(attacker)), "content-type": "application/json"}
    response = await api.client.post(BATCH, content=oversized, headers=headers)
    await assert_refused(api, response, 413, "payload_too_large", before)
    # Under the size limit, thousands of tiny items are counted and refused whole.
    tiny = json.dumps({"updates": [{"actionId": "x", "timestamp": "t"}] * 6000}).encode()
    assert len(tiny) < 256 * 1024
    response = await api.client.post(BATCH, content=tiny, headers=headers)
    await assert_refused(api, response, 413, "batch_too_large", before)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"score": 1_000_000}, id="score"),
        pytest.param({"points": 1_000_000}, id="points"),
        pytest.param({"userId": "RIVAL"}, id="userId"),
        pytest.param({"username": "RIVAL"}, id="username"),
    ],
)
async def test_client_chosen_points_or_owner_in_a_batch_item_are_refused(
    api: Api, extra: dict[str, Any]
) -> None:
    attacker, rival = new_user(), new_user()
    ticket = forge_ticket(attacker)
    clean = {"actionId": ticket, "timestamp": now_iso()}
    extra = {k: (rival if v == "RIVAL" else v) for k, v in extra.items()}
    # In an item, or beside the items (for all of them).
    for body in ({"updates": [clean | extra]}, {"updates": [clean], **extra}):
        response = await api.client.post(BATCH, json=body, headers=bearer(api.token(attacker)))
        await assert_refused(api, response, 400, "validation_error")
        assert "1000000" not in response.text
        assert rival not in response.text
    # The ticket was not burnt.
    assert outcomes(await post_batch(api, api.token(attacker), [ticket])) == [(True, None)]


@pytest.mark.parametrize(
    "scopes",
    [
        pytest.param(("actions:issue",), id="actions-issue"),
        pytest.param(("scores:admin", "leaderboard:read"), id="admin"),
        pytest.param(("scores:submit:all",), id="lookalike"),
        pytest.param(("scores:write",), id="scores-write-only"),
    ],
)
async def test_a_service_token_without_scores_submit_cannot_complete_players_tickets(
    api: Api, scopes: tuple[str, ...]
) -> None:
    player = new_user()
    tickets = [await api.issue(player), await api.issue(player)]
    service = make_token("matchmaker", scopes=scopes)
    response = await post_batch(api, service, tickets)
    if "scores:write" in scopes:  # it may complete its own tickets: these are not
        assert outcomes(response) == [(False, "action_not_owned")] * 2
        assert await api.leaderboard() == []
    else:
        body = await assert_refused(api, response, 403, "insufficient_scope")
        assert body["acceptedScopes"] == ["scores:write", "scores:submit"]
    assert await stored_at(database_of(api), player) == (None, [])
    # Nothing was burnt: a game server holding scores:submit completes them.
    real = make_token("game-server", scopes=("scores:submit",))
    assert outcomes(await post_batch(api, real, tickets)) == [(True, None)] * 2
