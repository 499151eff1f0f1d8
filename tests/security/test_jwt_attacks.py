"""Attacks on the bearer token: ``alg: none``, algorithm confusion, keys the identity
provider never published, tampered, expired, never-expiring and subless tokens, foreign
issuers and audiences, and the dev token endpoint. See tests/security/conftest.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import (
    ACTIONS,
    JWT_SECRET,
    USER_SCOPES,
    Api,
    assert_refused,
    bearer,
    forge_ticket,
    make_token,
    new_user,
    post_update,
    problem,
)
from tests.security.conftest import AppFactory
from tests.tokens import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    claims_of,
    hand_signed,
    public_jwk,
    public_pem,
    rs256_token,
    tamper,
    token_claims,
)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_an_unsigned_alg_none_token_cannot_steal_the_victims_ticket(
    api: Api, alg: str
) -> None:
    """The attacker intercepted the victim's ticket and signs nothing, claiming to be them."""
    victim = new_user()
    ticket = await api.issue(victim)
    before = await api.leaderboard()
    claims = token_claims(victim, scopes=(*USER_SCOPES, "scores:admin"))
    forged = hand_signed({"alg": alg, "typ": "JWT"}, claims, None)
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
        forged = hand_signed({"alg": "HS256", "typ": "JWT"}, token_claims(attacker), key_bytes)
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
    key_servers: tuple[JwksServer, JwksServer],
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
        evil_jwk = public_jwk(attacker_key, "evil-1", alg="RS256")
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
                jwk_text = json.dumps(public_jwk(idp_key, "idp-1", alg="RS256")).encode()
                token = hand_signed(header, token_claims(attacker), jwk_text)
            response = await post_update(api, forge_ticket(attacker), token)
            problem(response, 401, "invalid_token")
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


@pytest.mark.one_backend
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
