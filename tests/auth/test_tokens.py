"""TokenVerifier on its own (no database): HS256, RS256/ES256 from a PEM key or a JWKS URL."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from scoreboard.auth.principal import Principal
from scoreboard.auth.tokens import TokenVerifier
from scoreboard.errors import InvalidToken, ServiceUnavailable
from scoreboard.keys import load_keys
from tests.helpers import JWT_SECRET, make_settings, make_token
from tests.server import free_port
from tests.tokens import AUDIENCE, ISSUER, JwksServer, hand_signed, public_pem

# --------------------------------------------------------------------------- helpers


def verifier(tmp_path: Path, **overrides: Any) -> TokenVerifier:
    settings = make_settings("sqlite+aiosqlite://", tmp_path, **overrides)
    return TokenVerifier(settings, load_keys(settings))


def claims(sub: Any = "alice", ttl: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl}
    values.update(extra)
    return {k: v for k, v in values.items() if v is not None}


async def refused(v: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await v.verify(token)
    assert info.value.status == 401
    assert info.value.code == "invalid_token"
    return info.value


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --------------------------------------------------------------------------- HS256


async def test_hs256_token_gives_a_principal_with_its_claims(tmp_path: Path) -> None:
    v = verifier(tmp_path)
    token = make_token(
        "alice", username="Alice", scopes=("leaderboard:read", "scores:write"), ttl=600
    )
    principal = await v.verify(token)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert principal == Principal(
        user_id="alice",
        username="Alice",
        scopes=frozenset({"leaderboard:read", "scores:write"}),
        expires_at=float(exp),
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({"preferred_username": "Ali", "name": "Alice Liddell"}, "Ali", id="both"),
        pytest.param({"name": "Alice Liddell"}, "Alice Liddell", id="name-only"),
        pytest.param({}, "alice-id", id="fallback-to-sub"),
        pytest.param({"preferred_username": ""}, "alice-id", id="empty"),
        pytest.param({"preferred_username": "   "}, "alice-id", id="blank"),
        pytest.param({"preferred_username": 42}, "alice-id", id="not-a-string"),
        pytest.param({"preferred_username": "x" * 300}, "x" * 255, id="truncated"),
    ],
)
async def test_the_display_name_comes_from_preferred_username_then_name_then_sub(
    tmp_path: Path, extra: dict[str, Any], expected: str
) -> None:
    token = jwt.encode(claims("alice-id", **extra), JWT_SECRET, algorithm="HS256")
    assert (await verifier(tmp_path).verify(token)).username == expected


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        pytest.param("leaderboard:read", {"leaderboard:read"}, id="one"),
        pytest.param(
            "leaderboard:read  scores:write actions:issue",
            {"leaderboard:read", "scores:write", "actions:issue"},
            id="space-separated",
        ),
        pytest.param(
            "leaderboard:read scores:write\tactions:issue",
            {"leaderboard:read", "scores:write\tactions:issue"},
            id="a-tab-separates-nothing",
        ),
        pytest.param("", set(), id="empty"),
        pytest.param(None, set(), id="absent"),
        pytest.param(["scores:write"], set(), id="list-is-not-the-format"),
        pytest.param(7, set(), id="number"),
    ],
)
async def test_scopes_are_split_on_spaces_only(
    tmp_path: Path, scope: Any, expected: set[str]
) -> None:
    token = jwt.encode(claims(scope=scope), JWT_SECRET, algorithm="HS256")
    assert (await verifier(tmp_path).verify(token)).scopes == frozenset(expected)


async def test_a_small_leeway_applies_to_expiry(tmp_path: Path) -> None:
    v = verifier(tmp_path, jwt_leeway=5)
    just_expired = jwt.encode(claims(ttl=-2), JWT_SECRET, algorithm="HS256")
    assert (await v.verify(just_expired)).user_id == "alice"
    long_expired = jwt.encode(claims(ttl=-60), JWT_SECRET, algorithm="HS256")
    error = await refused(v, long_expired)
    assert "expired" in error.detail


def _hs512(payload: dict[str, Any]) -> str:
    header = {"alg": "HS512", "typ": "JWT"}
    return hand_signed(header, payload, JWT_SECRET.encode(), hashlib.sha512)


HS256_REFUSALS: dict[str, Callable[[], str]] = {
    "wrong-secret": lambda: jwt.encode(
        claims(), "another-secret-of-sufficient-length-0123", "HS256"
    ),
    "alg-none": lambda: hand_signed({"alg": "none", "typ": "JWT"}, claims(), None),
    "alg-None-capitalised": lambda: hand_signed({"alg": "None", "typ": "JWT"}, claims(), None),
    "alg-hs512-right-secret": lambda: _hs512(claims()),
    "missing-exp": lambda: jwt.encode(claims(exp=None), JWT_SECRET, "HS256"),
    "exp-not-a-number": lambda: hand_signed(
        {"alg": "HS256", "typ": "JWT"}, {"sub": "alice", "exp": "tomorrow"}, JWT_SECRET.encode()
    ),
    "missing-sub": lambda: jwt.encode(claims(sub=None), JWT_SECRET, "HS256"),
    "empty-sub": lambda: hand_signed(
        {"alg": "HS256", "typ": "JWT"}, claims(sub=""), JWT_SECRET.encode()
    ),
    "sub-37-chars": lambda: jwt.encode(claims(sub="s" * 37), JWT_SECRET, "HS256"),
    "sub-not-a-string": lambda: hand_signed(
        {"alg": "HS256", "typ": "JWT"}, claims(sub=12345), JWT_SECRET.encode()
    ),
    "sub-with-control-char": lambda: jwt.encode(claims(sub="ali\x00ce"), JWT_SECRET, "HS256"),
    "not-yet-valid": lambda: jwt.encode(claims(nbf=int(time.time()) + 300), JWT_SECRET, "HS256"),
    "aud-when-none-configured": lambda: jwt.encode(
        claims(aud="somebody-else"), JWT_SECRET, "HS256"
    ),
    "too-long": lambda: jwt.encode(claims(pad="p" * 9000), JWT_SECRET, "HS256"),
    "garbage": lambda: "not.a.jwt",
    "empty": lambda: "",
    "two-segments": lambda: "eyJhbGciOiJIUzI1NiJ9.e30",
}


@pytest.mark.parametrize("case", list(HS256_REFUSALS), ids=list(HS256_REFUSALS))
async def test_hs256_refusals(tmp_path: Path, case: str) -> None:
    await refused(verifier(tmp_path), HS256_REFUSALS[case]())


async def test_a_sub_of_36_chars_is_accepted(tmp_path: Path) -> None:
    """The control for 'sub-37-chars' above."""
    token = jwt.encode(claims(sub="s" * 36), JWT_SECRET, algorithm="HS256")
    assert (await verifier(tmp_path).verify(token)).user_id == "s" * 36


# --------------------------------------------------------------------------- RS256 / ES256 PEM


def rs256_verifier(tmp_path: Path, key: rsa.RSAPrivateKey, **overrides: Any) -> TokenVerifier:
    return verifier(
        tmp_path,
        jwt_secret=None,
        jwt_public_key=public_pem(key),
        jwt_algorithm="RS256",
        **overrides,
    )


async def test_rs256_with_a_pem_public_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    v = rs256_verifier(tmp_path, rsa_key)
    token = jwt.encode(
        claims("bob", preferred_username="Bob", scope="scores:write"), rsa_key, "RS256"
    )
    principal = await v.verify(token)
    assert (principal.user_id, principal.username) == ("bob", "Bob")
    assert principal.scopes == frozenset({"scores:write"})


async def test_rs256_pem_can_be_a_file_path_and_the_algorithm_is_inferred(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem_file = tmp_path / "idp.pem"
    pem_file.write_text(public_pem(rsa_key))
    v = verifier(tmp_path, jwt_secret=None, jwt_public_key=str(pem_file))
    token = jwt.encode(claims("bob"), rsa_key, "RS256")
    assert (await v.verify(token)).user_id == "bob"


async def test_rs256_token_signed_by_another_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    v = rs256_verifier(tmp_path, rsa_key)
    await refused(v, jwt.encode(claims(), other_rsa_key, "RS256"))


@pytest.mark.parametrize("configured", ["RS256", None], ids=["explicit", "inferred"])
async def test_hs256_signed_with_the_rsa_public_pem_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, configured: str | None
) -> None:
    """The classic algorithm confusion: the public key used as an HMAC secret."""
    pem = public_pem(rsa_key)
    v = verifier(tmp_path, jwt_secret=None, jwt_public_key=pem, jwt_algorithm=configured)
    for header in ({"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"}):
        await refused(v, hand_signed(header, claims(), pem.encode()))


async def test_alg_none_is_refused_with_a_public_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    v = rs256_verifier(tmp_path, rsa_key)
    await refused(v, hand_signed({"alg": "none", "typ": "JWT"}, claims(), None))


async def test_es256_is_refused_when_rs256_is_configured(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = rs256_verifier(tmp_path, rsa_key)
    await refused(v, jwt.encode(claims(), ec_key, "ES256"))


async def test_es256_with_a_pem_public_key(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey, other_ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = verifier(
        tmp_path, jwt_secret=None, jwt_public_key=public_pem(ec_key), jwt_algorithm="ES256"
    )
    assert (await v.verify(jwt.encode(claims("carol"), ec_key, "ES256"))).user_id == "carol"
    await refused(v, jwt.encode(claims("carol"), other_ec_key, "ES256"))


async def test_es256_is_inferred_from_an_ec_public_pem(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = verifier(tmp_path, jwt_secret=None, jwt_public_key=public_pem(ec_key))
    assert (await v.verify(jwt.encode(claims("carol"), ec_key, "ES256"))).user_id == "carol"


# --------------------------------------------------------------------------- JWKS


@pytest.fixture
def jwks(ec_key: ec.EllipticCurvePrivateKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(ec_key, "ec-1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def jwks_verifier(tmp_path: Path, url: str, **overrides: Any) -> TokenVerifier:
    values: dict[str, Any] = {"jwt_secret": None, "jwks_url": url, "jwt_algorithm": "ES256"}
    values.update(overrides)
    return verifier(tmp_path, **values)


def es256(key: ec.EllipticCurvePrivateKey, kid: str | None, **extra: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**extra), key, "ES256", headers=headers)


async def test_es256_via_jwks_is_accepted_and_the_key_set_cached(
    tmp_path: Path, jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = jwks_verifier(tmp_path, jwks.url)
    principal = await v.verify(es256(ec_key, "ec-1", sub="dave", scope="scores:write"))
    assert principal.user_id == "dave"
    assert principal.scopes == frozenset({"scores:write"})
    assert jwks.requests == 1
    for _ in range(3):
        await v.verify(es256(ec_key, "ec-1"))
    assert jwks.requests == 1


async def test_an_unknown_kid_is_refused_and_not_refetched_within_the_cooldown(
    tmp_path: Path, jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = jwks_verifier(tmp_path, jwks.url, jwks_unknown_kid_cooldown=60)
    await v.verify(es256(ec_key, "ec-1"))
    assert jwks.requests == 1
    # The first unknown kid may refresh the set once ...
    await refused(v, es256(ec_key, "unknown-1"))
    after_first = jwks.requests
    assert after_first <= 2
    # ... but a stream of further unknown kids within the cool-down asks nothing more.
    for i in range(5):
        await refused(v, es256(ec_key, f"unknown-{i + 2}"))
    assert jwks.requests == after_first
    # Known keys keep working from the cache.
    assert (await v.verify(es256(ec_key, "ec-1"))).user_id == "alice"
    assert jwks.requests == after_first


async def test_an_unknown_kid_on_a_cold_cache_refuses_without_a_fetch_storm(
    tmp_path: Path, jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = jwks_verifier(tmp_path, jwks.url, jwks_unknown_kid_cooldown=60)
    for i in range(5):
        await refused(v, es256(ec_key, f"unknown-{i}"))
    assert 1 <= jwks.requests <= 2


async def test_without_a_cooldown_every_unknown_kid_refetches(
    tmp_path: Path, jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """The control for the cool-down test: the request counter does see refetches."""
    v = jwks_verifier(tmp_path, jwks.url, jwks_unknown_kid_cooldown=0)
    await v.verify(es256(ec_key, "ec-1"))
    before = jwks.requests
    for i in range(3):
        await refused(v, es256(ec_key, f"unknown-{i}"))
    assert jwks.requests == before + 3


async def test_a_rotated_in_key_is_fetched_on_first_sight(
    tmp_path: Path,
    jwks: JwksServer,
    ec_key: ec.EllipticCurvePrivateKey,
    other_ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    v = jwks_verifier(tmp_path, jwks.url, jwks_unknown_kid_cooldown=60)
    await v.verify(es256(ec_key, "ec-1"))
    jwks.publish(other_ec_key, "ec-2")
    assert (await v.verify(es256(other_ec_key, "ec-2", sub="erin"))).user_id == "erin"
    assert jwks.requests == 2


async def test_a_jwks_token_without_kid_is_refused_without_a_fetch(
    tmp_path: Path, jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = jwks_verifier(tmp_path, jwks.url)
    await refused(v, es256(ec_key, None))
    assert jwks.requests == 0


async def test_a_jwks_token_signed_by_another_key_under_a_known_kid_is_refused(
    tmp_path: Path,
    jwks: JwksServer,
    other_ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    v = jwks_verifier(tmp_path, jwks.url)
    await refused(v, es256(other_ec_key, "ec-1"))


async def test_alg_none_and_hs256_are_refused_with_jwks(tmp_path: Path, jwks: JwksServer) -> None:
    v = jwks_verifier(tmp_path, jwks.url)
    await refused(v, hand_signed({"alg": "none", "kid": "ec-1"}, claims(), None))
    # HS256 keyed with the public JWK's JSON text, or with the x coordinate.
    jwk_text = json.dumps(jwks.keys[0]).encode()
    await refused(v, hand_signed({"alg": "HS256", "kid": "ec-1"}, claims(), jwk_text))
    x = str(jwks.keys[0]["x"]).encode()
    await refused(v, hand_signed({"alg": "HS256", "kid": "ec-1"}, claims(), x))


async def test_an_rs256_token_is_refused_when_es256_is_configured(
    tmp_path: Path, jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks.publish(rsa_key, "rsa-1")
    v = jwks_verifier(tmp_path, jwks.url)
    await refused(v, jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1"}))


async def test_an_es256_token_naming_an_rsa_kid_is_refused(
    tmp_path: Path,
    jwks: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    jwks.publish(rsa_key, "rsa-1")
    v = jwks_verifier(tmp_path, jwks.url)
    await refused(v, es256(ec_key, "rsa-1"))


async def test_an_unreachable_jwks_is_service_unavailable(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    nothing_there = free_port()
    v = jwks_verifier(tmp_path, f"http://127.0.0.1:{nothing_there}/jwks.json")
    with pytest.raises(ServiceUnavailable) as info:
        await v.verify(es256(ec_key, "ec-1"))
    assert (info.value.status, info.value.code) == (503, "service_unavailable")
    assert int(info.value.headers["Retry-After"]) > 0  # the problem says when to retry


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b"<html>oops</html>",
            id="not-json",
        ),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(
            b'{"keys": []}',
            id="no-keys",
        ),
    ],
)
async def test_a_broken_jwks_is_service_unavailable(
    tmp_path: Path, jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey, raw: bytes
) -> None:
    jwks.raw = raw
    v = jwks_verifier(tmp_path, jwks.url)
    with pytest.raises(ServiceUnavailable):
        await v.verify(es256(ec_key, "ec-1"))


# --------------------------------------------------------------------------- iss / aud


def iss_aud_verifier(tmp_path: Path) -> TokenVerifier:
    return verifier(tmp_path, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


async def test_issuer_and_audience_are_accepted_when_they_match(tmp_path: Path) -> None:
    v = iss_aud_verifier(tmp_path)
    token = jwt.encode(claims(iss=ISSUER, aud=AUDIENCE), JWT_SECRET, "HS256")
    assert (await v.verify(token)).user_id == "alice"
    listed = jwt.encode(claims(iss=ISSUER, aud=["other", AUDIENCE]), JWT_SECRET, "HS256")
    assert (await v.verify(listed)).user_id == "alice"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"iss": "https://evil.example.com/", "aud": AUDIENCE}, id="wrong-iss"),
        pytest.param({"aud": AUDIENCE}, id="missing-iss"),
        pytest.param({"iss": ISSUER, "aud": "another-api"}, id="wrong-aud"),
        pytest.param({"iss": ISSUER, "aud": ["another-api", "a-third"]}, id="wrong-aud-list"),
        pytest.param({"iss": ISSUER}, id="missing-aud"),
        pytest.param({"iss": ISSUER.rstrip("/"), "aud": AUDIENCE}, id="iss-near-miss"),
        pytest.param({"iss": ISSUER, "aud": AUDIENCE.upper()}, id="aud-case"),
    ],
)
async def test_issuer_and_audience_are_checked_when_configured(
    tmp_path: Path, extra: dict[str, Any]
) -> None:
    token = jwt.encode(claims(**extra), JWT_SECRET, "HS256")
    await refused(iss_aud_verifier(tmp_path), token)


async def test_a_token_with_an_audience_is_refused_when_none_is_configured(
    tmp_path: Path,
) -> None:
    v = verifier(tmp_path)
    await refused(v, jwt.encode(claims(aud=AUDIENCE), JWT_SECRET, "HS256"))
    await refused(v, jwt.encode(claims(aud=[AUDIENCE]), JWT_SECRET, "HS256"))
