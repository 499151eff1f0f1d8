"""The attack suite: the service attacked the way a cheater would attack it.

Every test plays one attack and asserts three things: the refusal's HTTP status (or the
WebSocket close code), its stable problem ``code``, and that no score changed. SECURITY.md
maps each threat to the code that stops it and to the test here (or elsewhere) that proves it.
The attacks are grouped by what they attack: tokens (test_jwt_attacks.py), action tickets and
mass assignment (test_ticket_attacks.py), flooding (test_flooding_attacks.py), the admin routes
(test_admin_route_attacks.py), bodies and input (test_input_attacks.py), information leaks
(test_leak_attacks.py), the WebSocket (test_websocket_attacks.py), boards
(test_board_attacks.py), and more in the other files here.

Most attacks run in-process on every backend of tests/conftest.py (SQLite, PostgreSQL, and
PostgreSQL with Redis), through the ``api`` fixture or ``app_with`` for an app with other
settings; those refused before any storage is touched are marked ``one_backend`` and run on
SQLite only (tests/conftest.py). Attacks that need real sockets, real concurrency or proxy
headers run against ``scoreboard serve`` processes (``start_server``), some in both shapes
(``shape``). A test marked ``xfail(strict=True)`` is an attack that currently succeeds: its
reason names the weakness and the fix.

The fixtures the attack files share are here; their plain helpers are in tests/helpers.py
(requests, refusals, what the database holds) and tests/tokens.py (tokens made by hand).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from tests.conftest import Backend
from tests.helpers import Api
from tests.postgres import truncate
from tests.tokens import JwksServer, public_jwk

AppFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def app_with(backend: Backend, tmp_path: Path) -> AppFactory:
    """An in-process app on this test's backend (SQLite, PostgreSQL, PostgreSQL + Redis) with
    settings overrides; ``tokens`` seeds the Api's token cache (for apps that do not verify
    the default HS256 test tokens)."""

    @asynccontextmanager
    async def open_app(
        tokens: dict[str, str] | None = None, **overrides: Any
    ) -> AsyncIterator[Api]:
        settings = backend.settings(tmp_path, **overrides)
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield Api(client, dict(tokens or {}))

    return open_app


@dataclass(frozen=True)
class Shape:
    """How a real server runs: embedded (SQLite, in-process limits and tickets) or production
    (PostgreSQL, with ranking, fan-out, limits and WebSocket tickets in Redis)."""

    name: str
    database_url: str
    env: dict[str, str]


@pytest.fixture(params=["embedded", "production"])
def shape(request: pytest.FixtureRequest, sqlite_url: str) -> Shape:
    if request.param == "embedded":
        return Shape("embedded", sqlite_url, {})
    postgres: str = request.getfixturevalue("postgres_url")
    asyncio.run(truncate(postgres))  # the board starts empty, as in the embedded shape
    redis_url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    env = {"SCOREBOARD_REDIS_URL": redis_url, "SCOREBOARD_REDIS_PREFIX": prefix}
    return Shape("production", postgres, env)


@pytest.fixture(scope="module")
def idp_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_servers(
    idp_key: rsa.RSAPrivateKey, attacker_key: rsa.RSAPrivateKey
) -> Iterator[tuple[JwksServer, JwksServer]]:
    """The identity provider's JWKS, and one the attacker hosts with their own key."""
    idp = JwksServer([public_jwk(idp_key, "idp-1", alg="RS256")]).start()
    evil = JwksServer([public_jwk(attacker_key, "evil-1", alg="RS256")]).start()
    try:
        yield idp, evil
    finally:
        idp.stop()
        evil.stop()
