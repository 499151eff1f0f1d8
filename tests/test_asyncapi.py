"""/schema/asyncapi.json describes /ws/leaderboard: it is a valid AsyncAPI 3.0 document (the
official JSON schema, from npm), every message example fits its payload schema, and the
messages are the ones the server's protocol module knows."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
from litestar.testing import AsyncTestClient

from scoreboard.leaderboard.schemas import LeaderboardEntry
from scoreboard.live import protocol

pytest_plugins = ["tests.node_tools"]


async def _document(client: AsyncTestClient) -> dict[str, Any]:  # type: ignore[type-arg]
    response = await client.get("/schema/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def _official_validator(node_modules: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(
        (node_modules / "@asyncapi/specs/schemas/3.0.0-without-$id.json").read_text()
    )
    validator: jsonschema.protocols.Validator = jsonschema.validators.validator_for(schema)(schema)
    return validator


async def test_the_document_is_valid_asyncapi_3(
    client: AsyncTestClient,  # type: ignore[type-arg]
    node_modules: Path,
) -> None:
    document = await _document(client)
    validator = _official_validator(node_modules)
    assert list(validator.iter_errors(document)) == []
    broken = copy.deepcopy(document)
    broken["operations"]["sendControl"]["action"] = "shout"  # the check can fail
    assert list(validator.iter_errors(broken)) != []


async def test_every_example_fits_its_message_and_every_message_is_known(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    document = await _document(client)
    messages = document["components"]["messages"]
    for message in messages.values():
        schema = {**message["payload"], "components": document["components"]}
        for example in message["examples"]:
            jsonschema.validate(example["payload"], schema)
    sent = {m["payload"]["properties"]["type"]["const"] for m in messages.values()}
    server_events = {
        protocol.ConnectionSuccess,
        protocol.LeaderboardUpdate,
        protocol.BoardReset,
        protocol.ScoreUpdate,
        protocol.ErrorEvent,
        protocol.Pong,
    }
    client_messages = {protocol.Ping, protocol.Resync, protocol.Subscribe, protocol.Unsubscribe}
    tags = {cls.__struct_config__.tag for cls in server_events | client_messages}
    assert sent == tags
    for decoded in (
        protocol.decode_client(json.dumps(messages[n]["examples"][0]["payload"]))
        for n in ("ping", "resync", "subscribe", "unsubscribe")
    ):
        assert type(decoded) in client_messages  # the examples are what the server accepts


async def test_the_events_the_server_encodes_fit_the_document(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    document = await _document(client)
    messages = document["components"]["messages"]
    entry = LeaderboardEntry(user_id="u-1", username="Ann", score=10, rank=1)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    events = {
        "connectionSuccess": protocol.ConnectionSuccess(
            "c", "u-1", "global", "all", None, 3, [entry]
        ),
        "leaderboardUpdate": protocol.LeaderboardUpdate("weekly", "2026-W49", now, 4, [entry], now),
        "boardReset": protocol.BoardReset("daily", "2026-12-03", "2026-12-02"),
        "scoreUpdate": protocol.ScoreUpdate("global", "all", "u-1", 10, 1),
        "error": protocol.ErrorEvent("rate_limited", "slow down"),
        "pong": protocol.Pong(),
    }
    for name, event in events.items():
        schema = {**messages[name]["payload"], "components": document["components"]}
        jsonschema.validate(json.loads(protocol.encode(event)), schema)
