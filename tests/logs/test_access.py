"""The access middleware in process: the latency histogram by route template, the request id
(accepted, replaced, returned and bound to every line a request logs), and the requests no
route or a refusing middleware answered. The log stream itself: test_log_stream.py."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from litestar import Litestar, get
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from scoreboard.app import create_app
from scoreboard.metrics import Metrics
from tests.helpers import bearer, make_settings, make_token

BOARD = "/api/boards/global/leaderboard"
BOARD_ROUTE = "/api/boards/{board}/leaderboard"
GENERATED = re.compile(r"[0-9a-f]{32}")
Client = AsyncTestClient[Litestar]
Serve = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    """An in-process client of an app on the embedded SQLite file, with extra settings."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Client]:
        settings = make_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}", tmp_path, **overrides
        )
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield client

    return start


def request_counts(app: Litestar) -> dict[tuple[str, str, str], float]:
    """``scoreboard_http_request_duration_seconds_count`` by (method, route, status)."""
    metrics: Metrics = app.state.metrics
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(metrics.scrape().decode()):
        for sample in family.samples:
            if sample.name == "scoreboard_http_request_duration_seconds_count":
                labels = sample.labels
                counts[labels["method"], labels["route"], labels["status"]] = sample.value
    return counts


def access_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == "request"]


def capture() -> Any:
    """structlog's events as the request made them, with the request's bound context."""
    return structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars])


async def test_the_histogram_counts_each_request_by_route_template(serve: Serve) -> None:
    async with serve() as client:
        token = make_token("ann")
        for _ in range(5):
            assert (await client.get(BOARD, headers=bearer(token))).status_code == 200
        assert (await client.get(f"{BOARD}?limit=3", headers=bearer(token))).status_code == 200
        refused = await client.get("/api/boards/global/leaderboard")  # no token
        assert refused.status_code == 401
        counts = request_counts(client.app)
    assert counts["GET", BOARD_ROUTE, "200"] == 6  # the query string is no other route
    assert counts["GET", BOARD_ROUTE, "401"] == 1
    assert not [key for key in counts if "global" in key[1]]


async def test_unrouted_requests_count_as_unmatched_never_by_their_path(serve: Serve) -> None:
    secret_path = f"/api/nope-{uuid.uuid4().hex}/deeper"
    async with serve() as client:
        assert (await client.get(f"{secret_path}?ticket=secret123")).status_code == 404
        assert (await client.get(f"{secret_path}-2")).status_code == 404
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.request("BREW", "/healthz")).status_code == 405
        counts = request_counts(client.app)
        scrape = client.app.state.metrics.scrape().decode()
    assert counts["GET", "unmatched", "404"] == 2
    assert counts["POST", "unmatched", "405"] == 1
    assert counts["other", "unmatched", "405"] == 1  # a made-up method is no new label value
    assert "nope-" not in scrape
    assert "secret123" not in scrape
    assert "BREW" not in scrape


async def test_refusals_of_the_other_middleware_are_timed_logged_and_identified(
    serve: Serve,
) -> None:
    """The per-address limit (429), the bearer check (401) and the NUL refusal (400) answer
    before any handler runs: each response still carries a request id, is logged with its
    route template and counted."""
    async with serve(rate_limit_ip="2/minute") as client:
        with capture() as logs:
            forged = make_token("ann", secret="another-key-that-is-long-enough-0123456789")
            responses = [
                await client.get(BOARD, headers=bearer(forged)),
                await client.get(f"{BOARD}?users=ann%00"),
                await client.get(BOARD, headers=bearer(make_token("ann"))),
                await client.get(BOARD, headers=bearer(make_token("ann"))),
            ]
        counts = request_counts(client.app)
    assert [r.status_code for r in responses] == [401, 400, 200, 429]
    lines = access_lines(logs)
    assert [(line["route"], line["status"]) for line in lines] == [
        (BOARD_ROUTE, status) for status in (401, 400, 200, 429)
    ]
    for response, line in zip(responses, lines, strict=True):
        assert GENERATED.fullmatch(response.headers["x-request-id"])
        assert line["request_id"] == response.headers["x-request-id"]
        assert line["method"] == "GET"
        assert line["duration_ms"] >= 0
    # The limit refuses before the token is read: the 429 knows no user.
    assert [line["user_id"] for line in lines] == [None, None, "ann", None]
    assert forged not in repr(logs)
    assert counts["GET", BOARD_ROUTE, "429"] == 1
    assert counts["GET", BOARD_ROUTE, "401"] == 1


WELL_FORMED = ["a", "req-42.trace:9Z_x", "0123456789abcdef" * 8]
MALFORMED = [
    b"",
    b"x" * 129,
    b"has space",
    b"tab\there",
    b"ctl\x01char",
    b"del\x7f",
    b"line\r\nbreak",
    b'quote"}{"level":"critical',
    "caf\u00e9".encode(),
    b"../../etc/passwd",
]


@pytest.mark.parametrize("sent", WELL_FORMED)
async def test_a_well_formed_request_id_is_kept(serve: Serve, sent: str) -> None:
    async with serve() as client:
        with capture() as logs:
            response = await client.get("/nope", headers={"X-Request-ID": sent})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == sent
    assert [line["request_id"] for line in access_lines(logs)] == [sent]


@pytest.mark.parametrize("sent", MALFORMED)
async def test_a_malformed_request_id_is_replaced(serve: Serve, sent: bytes) -> None:
    async with serve() as client:
        with capture() as logs:
            response = await client.get("/healthz", headers={b"X-Request-ID": sent})
    assert response.status_code == 200
    returned = response.headers["x-request-id"]
    assert GENERATED.fullmatch(returned)
    assert [line["request_id"] for line in access_lines(logs)] == [returned]


async def test_every_response_gets_its_own_request_id(serve: Serve) -> None:
    async with serve() as client:
        ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20
    assert all(GENERATED.fullmatch(i) for i in ids)


@get("/test/logs-inside", exclude_from_auth=True, status_code=204)
async def logs_inside() -> None:
    structlog.get_logger("test").info("inside", note="a line the request caused")


async def test_every_line_a_request_causes_carries_its_request_id(serve: Serve) -> None:
    async with serve() as client:
        client.app.register(logs_inside)
        with capture() as logs:
            first = await client.get("/test/logs-inside", headers={"X-Request-ID": "trace-1"})
            second = await client.get("/test/logs-inside")
            after = structlog.get_logger("test").info("outside")
    assert after is None
    assert first.status_code == second.status_code == 204
    inside = [line for line in logs if line["event"] == "inside"]
    assert [line["request_id"] for line in inside] == [
        "trace-1",
        second.headers["x-request-id"],
    ]
    outside = [line for line in logs if line["event"] == "outside"]
    assert "request_id" not in outside[0]  # unbound when the request ended
    assert [line["route"] for line in access_lines(logs)] == ["/test/logs-inside"] * 2


async def test_the_access_log_can_be_turned_off(serve: Serve) -> None:
    async with serve(access_log=False) as client:
        with capture() as logs:
            response = await client.get("/healthz")
        counts = request_counts(client.app)
    assert GENERATED.fullmatch(response.headers["x-request-id"])
    assert access_lines(logs) == []
    assert counts["GET", "/healthz", "200"] == 1  # still measured
