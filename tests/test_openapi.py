"""The OpenAPI document at /schema matches the routes and the error contract."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from litestar.handlers import HTTPRouteHandler
from litestar.testing import AsyncTestClient

from scoreboard.errors import PROBLEM_JSON
from scoreboard.openapi_examples import EXAMPLES


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


async def test_the_batch_route_documents_its_bounds_and_both_result_shapes(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    schema = await _schema(client)
    batch = schema["paths"]["/api/scores/batch"]["post"]
    for status in ("400", "401", "403", "413", "415", "429", "503"):
        assert PROBLEM_JSON in batch["responses"][status]["content"], status
    components = schema["components"]["schemas"]
    updates = components["ScoreBatchRequest"]["properties"]["updates"]
    assert (updates["minItems"], updates["maxItems"]) == (1, 100)
    assert updates["items"] == {"$ref": "#/components/schemas/ScoreUpdateRequest"}
    result = components["BatchResult"]
    assert set(result["required"]) == {"actionId", "success"}
    assert set(result["properties"]) == {
        "actionId",
        "success",
        "newScore",
        "rank",
        "boards",
        "code",
        "detail",
    }


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


OPERATIONS = {
    ("POST", "/api/actions"): "issueAction",
    ("POST", "/api/scores/update"): "updateScore",
    ("POST", "/api/scores/batch"): "updateScoresBatch",
    ("GET", "/api/leaderboard"): "getLeaderboard",
    ("GET", "/api/leaderboard/me"): "getMyStanding",
    ("GET", "/api/boards"): "listBoards",
    ("GET", "/api/boards/{board}/leaderboard"): "getBoardLeaderboard",
    ("GET", "/api/boards/{board}/me"): "getMyBoardStanding",
    ("POST", "/api/ws-ticket"): "issueWsTicket",
    ("GET", "/healthz"): "getHealth",
    ("GET", "/readyz"): "getReadiness",
    ("GET", "/metrics"): "getMetrics",
    ("GET", "/api/admin/flags"): "listFlags",
    ("POST", "/api/admin/flags/{flag_id}/resolve"): "resolveFlag",
    ("GET", "/api/admin/users/{user_id}/history"): "getUserHistory",
    ("POST", "/api/admin/users/{user_id}/adjust"): "adjustUserScore",
    ("POST", "/api/admin/users/{user_id}/reset"): "resetUserScore",
    ("POST", "/api/admin/users/{user_id}/suspend"): "suspendUser",
    ("POST", "/api/admin/users/{user_id}/unsuspend"): "unsuspendUser",
    ("PUT", "/api/admin/boards/{board}"): "defineBoard",
    ("DELETE", "/api/admin/boards/{board}"): "retireBoard",
    ("POST", "/api/admin/boards/{board}/rollover"): "rolloverBoard",
}


async def test_operation_ids_read_like_methods(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    paths = (await _schema(client))["paths"]
    found = {
        (method.upper(), path): operation["operationId"]
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert found == OPERATIONS


async def test_every_body_has_an_example_that_fits_its_schema(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    schema = await _schema(client)
    components = schema["components"]
    bodies: set[str] = set()
    for operations in schema["paths"].values():
        for operation in operations.values():
            contents = [operation.get("requestBody", {}).get("content", {})]
            contents += [
                response.get("content", {}) for response in operation["responses"].values()
            ]
            for content in contents:
                for media in content.values():
                    refs = json.dumps(media["schema"])
                    bodies |= set(re.findall(r"#/components/schemas/(\w+)", refs))
    assert bodies, "no bodies found"
    components = _closed(components)  # an example may not carry fields the schema lacks
    for name in sorted(bodies):
        examples = components["schemas"][name].get("examples")
        assert examples, f"{name} has no example"
        root = {"$ref": f"#/components/schemas/{name}", "components": components}
        for example in examples:
            jsonschema.validate(example, root)
    broken = {**EXAMPLES["ScoreUpdateRequest"], "timestamp": 5}
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        jsonschema.validate(
            broken, {"$ref": "#/components/schemas/ScoreUpdateRequest", "components": components}
        )


def _closed(node: Any) -> Any:
    """The schemas with ``additionalProperties: false`` on every object that lists its own."""
    if isinstance(node, dict):
        closed = {key: _closed(value) for key, value in node.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node
