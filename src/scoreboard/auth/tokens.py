"""JWT verification (HS256, or RS256/ES256 from a PEM key or a JWKS URL) and dev minting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import anyio.to_thread
import jwt

from scoreboard.auth.principal import Principal
from scoreboard.config import Settings
from scoreboard.errors import InvalidToken, ServiceUnavailable
from scoreboard.keys import KeyMaterial

MAX_USER_ID = 36
MAX_USERNAME = 255
MAX_TOKEN_BYTES = 8192


def valid_user_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_USER_ID and value.isprintable()


class JwksKeys:
    """Signing keys from a JWKS URL, cached, with a cool-down before refetching on unknown kid.

    The cool-down stops a stream of tokens with random ``kid`` values from turning into a
    stream of requests to the identity provider.
    """

    def __init__(self, url: str, cache_seconds: float, cooldown: float) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=int(cache_seconds))
        self._cooldown = cooldown
        self._last_refresh = float("-inf")

    async def key_for(self, token: str) -> Any:
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
        return key

    async def _find(self, kid: str, *, refresh: bool) -> Any:
        try:
            jwk_set = await anyio.to_thread.run_sync(self._client.get_jwk_set, refresh)
        except jwt.PyJWKClientError as exc:
            raise ServiceUnavailable("the identity provider's keys cannot be fetched") from exc
        for key in jwk_set.keys:
            if key.key_id == kid:
                return key.key
        return None


class TokenVerifier:
    def __init__(self, settings: Settings, keys: KeyMaterial) -> None:
        self._algorithm = keys.jwt_algorithm
        self._static_key: Any = keys.jwt_secret or keys.jwt_public_key
        self._jwks = (
            JwksKeys(keys.jwks_url, settings.jwks_cache_seconds, settings.jwks_unknown_kid_cooldown)
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

    async def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("the token is too long")
        key = await self._jwks.key_for(token) if self._jwks else self._static_key
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid: {exc}") from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not valid_user_id(sub):
        raise InvalidToken(f"'sub' must be a printable string of 1 to {MAX_USER_ID} characters")
    assert isinstance(sub, str)
    name = claims.get("preferred_username") or claims.get("name") or sub
    username = name[:MAX_USERNAME] if isinstance(name, str) and name.strip() else sub
    raw_scope = claims.get("scope", "")
    scopes = raw_scope.split() if isinstance(raw_scope, str) else []
    exp = claims["exp"]
    return Principal(
        user_id=sub,
        username=username,
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
