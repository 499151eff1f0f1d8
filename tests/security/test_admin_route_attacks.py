"""Attacks on the admin routes: every route the app has, called by a player, by an
anonymous caller, with lookalike scopes and through path tricks. See
tests/security/conftest.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from tests.helpers import (
    ZERO_UUID,
    Api,
    assert_refused,
    bearer,
    history_of,
    make_token,
    new_user,
    problem,
)


def _admin_routes(app: Litestar, victim: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every /api/admin route the app really has, with its parameters filled in."""
    routes: list[tuple[str, str, dict[str, Any] | None]] = []
    for route in app.routes:
        if not (isinstance(route, HTTPRoute) and route.path.startswith("/api/admin")):
            continue
        path = re.sub(
            r"\{(\w+):\w+\}",
            lambda m: victim if "user" in m.group(1) else ZERO_UUID,
            route.path,
        )
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            body = None
            if method == "POST":
                body = {"reason": "i want points", "points": 1_000_000}
                if not path.endswith("/adjust"):
                    body.pop("points")
            routes.append((method, path, body))
    return routes


async def _hit_every_admin_route(
    api: Api, headers: dict[str, str], status: int, code: str
) -> list[str]:
    victim = new_user()
    await api.score(victim)
    before = await api.leaderboard()
    app: Litestar = api.client.app  # type: ignore[attr-defined]
    routes = _admin_routes(app, victim)
    for method, path, body in routes:
        response = await api.client.request(method, path, json=body, headers=headers)
        refusal = problem(response, status, code)
        if code == "insufficient_scope":
            assert refusal["requiredScope"] == "scores:admin"
    assert await api.leaderboard() == before
    history = await history_of(api, victim)
    assert (history["score"], history["suspended"], len(history["updates"])) == (10, False, 1)
    return [f"{method} {path.replace(victim, '{user}')}" for method, path, _ in routes]


@pytest.mark.one_backend
async def test_every_admin_route_refuses_a_player_token(api: Api) -> None:
    player = make_token(new_user(), scopes=("leaderboard:read", "scores:write", "actions:issue"))
    seen = await _hit_every_admin_route(api, bearer(player), 403, "insufficient_scope")
    assert {
        "GET /api/admin/flags",
        f"POST /api/admin/flags/{ZERO_UUID}/resolve",
        "GET /api/admin/users/{user}/history",
        "POST /api/admin/users/{user}/adjust",
        "POST /api/admin/users/{user}/reset",
        "POST /api/admin/users/{user}/suspend",
        "POST /api/admin/users/{user}/unsuspend",
    } <= set(seen)


@pytest.mark.one_backend
async def test_every_admin_route_refuses_an_anonymous_caller(api: Api) -> None:
    seen = await _hit_every_admin_route(api, {}, 401, "invalid_token")
    assert len(seen) >= 7


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"scope": "scores:admin:read leaderboard:read"}, id="prefixed"),
        pytest.param({"scope": "SCORES:ADMIN"}, id="uppercase"),
        pytest.param({"scope": "scores:write,scores:admin"}, id="comma-joined"),
        pytest.param({"scope": ["scores:admin"]}, id="scope-as-list"),
        pytest.param({"scope": "scores:write", "scp": "scores:admin"}, id="scp-claim"),
        pytest.param({"scope": "scores:write", "roles": ["admin"], "admin": True}, id="roles"),
    ],
)
async def test_lookalike_admin_scopes_grant_nothing(api: Api, claims: dict[str, Any]) -> None:
    victim = new_user()
    await api.score(victim)
    before = await api.leaderboard()
    token = make_token(new_user(), **claims)
    response = await api.client.post(
        f"/api/admin/users/{victim}/adjust",
        json={"points": 1_000_000, "reason": "promote myself"},
        headers=bearer(token),
    )
    await assert_refused(api, response, 403, "insufficient_scope", before)


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        pytest.param("/api/admin/flags/", 403, "insufficient_scope", id="trailing-slash"),
        pytest.param("/api//admin/flags", 403, "insufficient_scope", id="double-slash"),
        pytest.param("/api/%61dmin/flags", 403, "insufficient_scope", id="percent-encoded"),
        pytest.param("/api/admin%2Fflags", 403, "insufficient_scope", id="encoded-slash"),
        pytest.param("/API/ADMIN/FLAGS", 404, "not_found", id="uppercase"),
    ],
)
async def test_path_tricks_do_not_reach_an_admin_route_unguarded(
    api: Api, path: str, status: int, code: str
) -> None:
    before = await api.leaderboard()
    response = await api.client.get(path, headers=bearer(api.token(new_user())))
    await assert_refused(api, response, status, code, before)
