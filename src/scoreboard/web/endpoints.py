"""The live page at ``/``, its static files, and (dev only) a token for the page's viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Response, get
from litestar.handlers import BaseRouteHandler
from litestar.params import QueryParameter
from litestar.static_files import create_static_files_router

from scoreboard.auth.guards import ApiRequest
from scoreboard.auth.principal import Scope
from scoreboard.auth.tokens import MAX_USER_ID, mint_token, valid_user_id
from scoreboard.config import Settings
from scoreboard.errors import ValidationFailed
from scoreboard.keys import KeyMaterial

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@get("/", include_in_schema=False, exclude_from_auth=True)
async def live_page() -> Response[bytes]:
    return Response(
        (STATIC / "index.html").read_bytes(), media_type="text/html", headers=PAGE_HEADERS
    )


class DevToken(msgspec.Struct):
    token: str
    user_id: str = msgspec.field(name="userId")


@get("/dev/token", include_in_schema=False, exclude_from_auth=True)
async def dev_token(
    request: ApiRequest,
    user: Annotated[str, QueryParameter(min_length=1, max_length=MAX_USER_ID)],
) -> DevToken:
    """Development only: a read-only token so the page works with no identity provider."""
    if not valid_user_id(user):
        raise ValidationFailed("user must be 1 to 36 printable characters, no spaces")
    keys: KeyMaterial = request.app.state["key_material"]
    settings: Settings = request.app.state.settings
    token = mint_token(keys, settings, user, username=user, scopes=[Scope.READ.value], ttl=3600)
    return DevToken(token=token, user_id=user)


def web_handlers(settings: Settings, keys: KeyMaterial) -> list[BaseRouteHandler | Any]:
    handlers: list[BaseRouteHandler | Any] = [
        live_page,
        create_static_files_router(
            path="/static", directories=[STATIC], include_in_schema=False, send_as_attachment=False
        ),
    ]
    # Only with the generated dev secret: a configured secret means real users' tokens.
    if settings.env == "dev" and settings.jwt_secret is None and keys.jwt_secret is not None:
        handlers.append(dev_token)
    return handlers
