"""schemathesis against the live OpenAPI document (/schema/openapi.json) of an app on SQLite,
every request carrying a valid token with every scope: no 5xx, and every response documented
(status code, content type, body schema).

Bounded: 25 generated cases per operation (plus schemathesis' coverage cases), derandomized
so a failure reproduces. The app runs in-process with its lifespan (schemathesis' ASGI
transport starts it on the first call and stops it at exit).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from litestar.testing import AsyncTestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scoreboard.app import create_app
from tests.helpers import bearer, make_settings, make_token, problem

Case = schemathesis.Case[Any]
ALL_SCOPES = ("leaderboard:read", "scores:write", "actions:issue", "scores:admin")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BOUNDED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

DATA_DIR = Path(tempfile.mkdtemp(prefix="scoreboard-schemathesis-"))
atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)  # runs after the app stops
APP = create_app(make_settings(f"sqlite+aiosqlite:///{DATA_DIR / 'scoreboard.db'}", DATA_DIR))
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)


def valid_token() -> dict[str, str]:
    """A fresh user per case: per-user quotas (rate limits, WebSocket tickets) stay out of
    the way, so a finding does not depend on how many cases ran before."""
    return bearer(make_token(f"fuzz-{uuid.uuid4().hex[:12]}", username="Fuzzer", scopes=ALL_SCOPES))


@schema.exclude(path_regex="^/api/admin/").parametrize()
@BOUNDED
def test_public_operations_conform_to_the_schema(case: Case) -> None:
    case.call_and_validate(headers=valid_token(), checks=CHECKS)


@schema.include(path_regex="^/api/admin/").parametrize()
@BOUNDED
def test_admin_operations_conform_to_the_schema(case: Case) -> None:
    case.call_and_validate(headers=valid_token(), checks=CHECKS)


async def test_too_many_ws_tickets_is_a_client_error(tmp_path: Path) -> None:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db'}", tmp_path))
    headers = bearer(make_token("hoarder"))
    async with AsyncTestClient(app=app) as client:
        responses = [await client.post("/api/ws-ticket", headers=headers) for _ in range(25)]
    assert [r.status_code for r in responses[:20]] == [201] * 20
    for response in responses[20:]:
        problem(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) > 0
