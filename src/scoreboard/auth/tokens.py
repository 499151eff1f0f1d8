"""JWT verification (HS256, or RS256/ES256 from a PEM key or a JWKS URL) and dev minting."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import anyio.to_thread
import jwt

from scoreboard.auth.principal import Principal
from scoreboard.config import Settings
from scoreboard.errors import InvalidToken, ServiceUnavailable
from scoreboard.keys import ASYMMETRIC, KeyMaterial

MAX_USER_ID = 36
MAX_USERNAME = 255
MAX_TOKEN_BYTES = 8192


MAX_EXP = 2**40  # seconds since 1970: far beyond any real expiry, within a float's range


def valid_user_id(value: object) -> bool:
    """1 to 36 printable characters, no spaces and no ``/``: every id that can score must be
    one the admin routes (``/api/admin/users/{user_id}/…``) can address."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USER_ID
        and value.isprintable()
        and not any(c.isspace() or c == "/" for c in value)
    )


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is meant for another audience"),
    (jwt.InvalidIssuerError, "the token comes from another issuer"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not allowed"),
    (jwt.InvalidSignatureError, "the token's signature is not valid"),
)


def _reason(exc: Exception) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no '{exc.claim}' claim"
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "the token is malformed or not valid"


class JwksKeys:
    """Signing keys from a JWKS URL, cached, with a cool-down before refetching on unknown kid.

    The cool-down stops a stream of tokens with random ``kid`` values from turning into a
    stream of requests to the identity provider. Only RSA/EC keys of the allowed algorithm
    are considered, so a token cannot pick a key of another family by naming its ``kid``.
    """

    def __init__(self, url: str, algorithm: str | None, cache_seconds: float, cooldown: float):
        self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=int(cache_seconds))
        self._allowed = {algorithm} if algorithm else set(ASYMMETRIC)
        self._cooldown = cooldown
        self._last_refresh = float("-inf")

    async def key_for(self, token: str) -> tuple[Any, str]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token is malformed") from exc
        if not isinstance(kid, str):
            raise InvalidToken("the token names no key id (kid)")
        key = await self._find(kid, refresh=False)
        if key is None and time.monotonic() - self._last_refresh >= self._cooldown:
            self._last_refresh = time.monotonic()
            key = await self._find(kid, refresh=True)
        if key is None:
            raise InvalidToken("the token is signed with an unknown key")
        return key.key, key.algorithm_name

    async def _find(self, kid: str, *, refresh: bool) -> jwt.PyJWK | None:
        try:
            jwk_set = await anyio.to_thread.run_sync(self._client.get_jwk_set, refresh)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as exc:
            raise ServiceUnavailable("the identity provider's keys cannot be fetched") from exc
        for key in jwk_set.keys:
            if key.key_id == kid and key.algorithm_name in self._allowed:
                return key
        return None


class TokenVerifier:
    """Verifies bearer tokens. Verified tokens are remembered (LRU) until they expire, so a
    client sending many requests with one token pays for the signature check once."""

    def __init__(self, settings: Settings, keys: KeyMaterial, cache_size: int = 4096) -> None:
        self._algorithm = keys.jwt_algorithm
        self._static_key: Any = keys.jwt_secret or keys.jwt_public_key
        self._jwks = (
            JwksKeys(
                keys.jwks_url,
                keys.jwt_algorithm,
                settings.jwks_cache_seconds,
                settings.jwks_unknown_kid_cooldown,
            )
            if keys.jwks_url
            else None
        )
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway
        required = ["exp", "sub"]
        required += ["iss"] if self._issuer else []
        required += ["aud"] if self._audience else []
        self._options: Any = {"require": required}
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size

    async def verify(self, token: str) -> Principal:
        principal = self._verified.get(token)
        if principal is not None:
            if principal.expires_at + self._leeway < time.time():
                del self._verified[token]
                raise InvalidToken("the token has expired")
            self._verified.move_to_end(token)
            return principal
        principal = await self._verify(token)
        self._verified[token] = principal
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("the token is too long")
        algorithm: str | None
        if self._jwks:
            key, algorithm = await self._jwks.key_for(token)
        else:
            key, algorithm = self._static_key, self._algorithm
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm] if algorithm else [],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options=self._options,
            )
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidToken(_reason(exc)) from exc
        if self._audience is None and "aud" in claims:
            # Any audience, an empty list included: a token meant for someone else.
            raise InvalidToken("the token is meant for another audience")
        return principal_from_claims(claims)


def _printable(value: object) -> str:
    """A display name fit to store and show: no control characters, trimmed."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value if c.isprintable()).strip()


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not valid_user_id(sub):
        raise InvalidToken(f"'sub' must be 1 to {MAX_USER_ID} printable characters, no spaces")
    assert isinstance(sub, str)
    names = (_printable(claims.get("preferred_username")), _printable(claims.get("name")))
    username = next((n for n in names if n), sub)
    raw_scope = claims.get("scope", "")
    # RFC 6749 3.3: scopes are separated by U+0020 only. str.split() would also split on
    # tabs, line breaks, NBSP and more, so one odd scope string could grant `scores:admin`.
    scopes = [s for s in raw_scope.split(" ") if s] if isinstance(raw_scope, str) else []
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < MAX_EXP:
        raise InvalidToken("'exp' must be a number of seconds since 1970")
    return Principal(
        user_id=sub,
        username=username[:MAX_USERNAME],
        scopes=frozenset(scopes),
        expires_at=float(exp),
    )


def mint_token(
    keys: KeyMaterial,
    settings: Settings,
    user_id: str,
    *,
    username: str | None = None,
    scopes: Iterable[str] = (),
    ttl: int = 3600,
) -> str:
    """Sign a token with the configured HS256 secret (dev and integration convenience)."""
    if keys.jwt_secret is None:
        raise ValueError(
            "tokens can be minted only with an HS256 secret; with RS256/ES256 "
            "your identity provider issues them"
        )
    if not valid_user_id(user_id):
        raise ValueError(f"user id must be 1 to {MAX_USER_ID} printable characters")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
        "scope": " ".join(scopes),
    }
    if username:
        claims["preferred_username"] = username
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, keys.jwt_secret, algorithm="HS256")
