"""Litestar glue: read the bearer token once per request, and guards that demand scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from scoreboard.auth.principal import Principal, Scope
from scoreboard.auth.tokens import TokenVerifier
from scoreboard.errors import InsufficientScope, InvalidToken

ApiRequest = Request[Any, Any, Any]
# Guards are coroutines: Litestar runs plain-function guards in a worker thread.
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Verifies a bearer token when one is sent; guards decide whether one was needed."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        try:
            token = bearer_token(connection)
            if token is None:
                return AuthenticationResult(user=None, auth=None)
            verifier: TokenVerifier = connection.app.state.token_verifier
            return AuthenticationResult(user=await verifier.verify(token), auth=token)
        except InvalidToken as refusal:
            connection.app.state.metrics.auth_failures.inc()
            ip = connection.client.host if connection.client else None
            evidence = {"detail": refusal.detail, "path": connection.url.path}
            await connection.app.state.abuse.observe("auth_failures", None, ip, evidence)
            raise


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise InvalidToken("this operation needs a bearer token")
    return user


def requires(scope: Scope, *alternatives: Scope) -> Guard:
    """The token must hold ``scope``, or one of the ``alternatives``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = current_principal(connection)
        if not any(principal.has(s) for s in (scope, *alternatives)):
            raise InsufficientScope(scope.value, *(s.value for s in alternatives))

    return guard


async def can_read(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Leaderboard reads: anyone when SCOREBOARD_PUBLIC_READ is on, else `leaderboard:read`."""
    if connection.scope.get("user") is None and connection.app.state.settings.public_read:
        return
    if not current_principal(connection).has(Scope.READ):
        raise InsufficientScope(Scope.READ.value)
