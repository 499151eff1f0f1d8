"""The OpenAPI document at /schema matches the routes and the error contract."""

from __future__ import annotations

import re
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.testing import AsyncTestClient

from scoreboard.errors import PROBLEM_JSON


async def _schema(client: AsyncTestClient) -> dict[str, Any]:  # type: ignore[type-arg]
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


async def test_every_route_is_documented_with_its_methods(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    paths = (await _schema(client))["paths"]
    documented = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    served = {
        (re.sub(r":\w+}", "}", route.path), method)
        for route in client.app.routes
        for handler in getattr(route, "route_handlers", ())
        if isinstance(handler, HTTPRouteHandler) and handler.resolve_include_in_schema()
        for method in handler.http_methods
        if method not in ("HEAD", "OPTIONS") and not route.path.startswith("/schema")
    }
    assert documented == served


async def test_errors_are_documented_as_problem_details(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    schema = await _schema(client)
    update = schema["paths"]["/api/scores/update"]["post"]
    for status in ("400", "401", "403", "409", "413", "415", "422", "503"):
        assert PROBLEM_JSON in update["responses"][status]["content"], status
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) >= {"type", "title", "status", "detail", "code", "instance"}


async def test_request_bodies_match_the_spec(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    components = (await _schema(client))["components"]
    update = components["schemas"]["ScoreUpdateRequest"]
    assert set(update["properties"]) == {"actionId", "timestamp"}
    assert set(update["required"]) == {"actionId", "timestamp"}
    response = components["schemas"]["ScoreUpdateResponse"]
    assert set(response["properties"]) == {"success", "newScore", "rank", "boards"}
    assert "BearerToken" in components["securitySchemes"]


async def test_probes_need_no_token(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    paths = (await _schema(client))["paths"]
    assert paths["/healthz"]["get"]["security"] == [{}]
    assert (
        await client.get("/healthz", headers={"Authorization": "Bearer junk"})
    ).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    expected = {"status": "ok", "database": "ok", "writer": "ok"}
    if client.app.state.get("redis") is not None:
        expected["redis"] = "ok"
    assert ready.json() == expected
