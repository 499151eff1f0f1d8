"""Attacks through bodies and input: oversize and chunked bodies, cross-site form
posts, edge timestamps, and SQL in identifiers and filters. See tests/security/conftest.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.helpers import (
    ACTIONS,
    BATCH,
    UPDATE,
    Api,
    admin_token,
    assert_refused,
    bearer,
    clean_log,
    flags_of,
    forge_ticket,
    history_of,
    make_token,
    new_user,
    now_iso,
    post_update,
    problem,
    real_client,
    stored_at,
)
from tests.live.conftest import StartServer


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("path", "admin"),
    [
        pytest.param(ACTIONS, False, id="issue"),
        pytest.param(UPDATE, False, id="update"),
        pytest.param(BATCH, False, id="batch"),
        pytest.param("/api/admin/users/victim/adjust", True, id="admin-adjust"),
        pytest.param("/api/admin/users/victim/suspend", True, id="admin-suspend"),
    ],
)
async def test_a_megabyte_body_is_refused_with_413_on_every_json_route(
    api: Api, path: str, admin: bool
) -> None:
    before = await api.leaderboard()
    token = admin_token() if admin else api.token(new_user())
    body = json.dumps({"reason": "r" * 1_000_000, "points": 1, "type": "instant"}).encode()
    response = await api.client.post(
        path, content=body, headers={**bearer(token), "content-type": "application/json"}
    )
    await assert_refused(api, response, 413, "payload_too_large", before)


@pytest.mark.slow
async def test_a_chunked_body_without_content_length_is_cut_off_at_the_size_limit(
    start_server: StartServer, sqlite_url: str
) -> None:
    """Streaming a body with Transfer-Encoding: chunked must not dodge the size limit."""
    server = start_server()
    attacker = new_user()
    ticket = forge_ticket(attacker)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"actionId": "' + ticket.encode() + b'", "timestamp": "' + now_iso().encode()
        yield b'", "pad": "'
        for _ in range(64):
            yield b"p" * 1024
        yield b'"}'

    async with real_client(server) as client:
        response = await client.post(
            UPDATE,
            content=chunks(),
            headers={**bearer(make_token(attacker)), "content-type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        problem(response, 413, "payload_too_large")
        assert await Api(client).leaderboard() == []
    assert await stored_at(sqlite_url, attacker) == (None, [])
    clean_log(server)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_cross_site_form_post_cannot_score(api: Api, content_type: str) -> None:
    """A form on another site can send these content types without a CORS preflight."""
    attacker = new_user()
    before = await api.leaderboard()
    body = json.dumps({"actionId": forge_ticket(attacker), "timestamp": now_iso()})
    response = await api.client.post(
        UPDATE,
        content=body.encode(),
        headers={**bearer(api.token(attacker)), "content-type": content_type},
    )
    await assert_refused(api, response, 415, "unsupported_media_type", before)


# The 400s are refused while the body is parsed, before the service: one backend proves them.
# The 422s are the service's clock-skew rule, which counts (and may flag) what it refuses.
VALIDATION = pytest.mark.one_backend


@pytest.mark.parametrize(
    ("timestamp", "status", "code"),
    [
        pytest.param("9999-12-31T23:59:59+00:00", 422, "timestamp_out_of_window", id="year-9999"),
        pytest.param("0001-01-01T00:00:00+23:59", 422, "timestamp_out_of_window", id="year-1"),
        pytest.param("9999-12-31T23:59:59-23:59", 422, "timestamp_out_of_window", id="past-max"),
        pytest.param(
            "2026-01-01T00:00:00+99:00", 400, "validation_error", id="offset-99h", marks=VALIDATION
        ),
        pytest.param(
            "2026-01-01T00:00:00+24:00", 400, "validation_error", id="offset-24h", marks=VALIDATION
        ),
        pytest.param(
            "2026-02-30T00:00:00Z", 400, "validation_error", id="feb-30", marks=VALIDATION
        ),
        pytest.param("1e309", 400, "validation_error", id="overflowing-number", marks=VALIDATION),
        pytest.param("NaN", 400, "validation_error", id="nan", marks=VALIDATION),
        pytest.param("now\x00", 400, "validation_error", id="nul", marks=VALIDATION),
    ],
)
async def test_edge_timestamps_are_refused_without_a_500(
    api: Api, timestamp: str, status: int, code: str
) -> None:
    attacker = new_user()
    before = await api.leaderboard()
    response = await post_update(
        api, forge_ticket(attacker), api.token(attacker), timestamp=timestamp
    )
    await assert_refused(api, response, status, code, before)


SQLI_USER = "x'OR'1'='1';DELETE--"


async def test_sql_in_identifiers_and_filters_is_data_not_code(api: Api) -> None:
    before = await api.leaderboard()
    issue = await api.client.post(
        ACTIONS, json={"type": "instant' OR '1'='1"}, headers=bearer(api.token(SQLI_USER))
    )
    await assert_refused(api, issue, 422, "unknown_action_type", before)
    # The quote-laden user id is a legal id: it scores its own 10 points, nothing more.
    assert (await api.score(SQLI_USER))["newScore"] == 10
    honest = new_user()
    assert (await api.score(honest))["newScore"] == 10
    assert {e["userId"]: e["score"] for e in await api.leaderboard()} == {SQLI_USER: 10, honest: 10}
    history = await history_of(api, SQLI_USER)
    assert (history["userId"], history["score"], len(history["updates"])) == (SQLI_USER, 10, 1)
    # A filter value that would match every row if it were spliced into SQL matches none.
    await post_update(api, "forged", api.token(honest))  # leaves one forged_ticket flag
    assert len(await flags_of(api, honest, "forged_ticket")) == 1
    injected = await api.client.get(
        "/api/admin/flags",
        params={"userId": "' OR '1'='1", "status": "all"},
        headers=bearer(admin_token()),
    )
    assert injected.status_code == 200
    assert injected.json() == {"flags": []}
