"""What every response and request goes through, matched route or not: the headers every
response carries (a before_send hook, which Litestar runs for every message the app sends),
a problem document for a refused CORS preflight, and the refusal of NUL characters in a
path or query (which no route means, and which PostgreSQL cannot store)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from scoreboard.errors import PROBLEM_JSON, ValidationFailed

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
# A response that says nothing else may load nothing and be framed nowhere; the live page
# sets its own policy, and the docs pages under /schema get theirs: scripts and styles from
# this origin only (Swagger UI sets some styles inline).
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
CSP = "Content-Security-Policy"


def security_headers(*, hsts: bool) -> Callable[[Message, Scope], Awaitable[None]]:
    headers = {**BASE_HEADERS, **({"Strict-Transport-Security": HSTS} if hsts else {})}

    async def add(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            sent = MutableScopeHeaders.from_message(message)
            for name, value in headers.items():
                if name not in sent:
                    sent[name] = value
            if CSP not in sent:
                sent[CSP] = DOCS_CSP if scope.get("path", "").startswith("/schema") else API_CSP

    return add


REFUSED_PREFLIGHT = "_scoreboard_refused_preflight"


def _problem(status: int, code: str, title: str, detail: str, path: str) -> bytes:
    return json.dumps(
        {
            "type": f"urn:scoreboard:problem:{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "instance": path,
        }
    ).encode()


def _replacement(status: int, content_type: str, scope: Scope) -> bytes | None:
    """The problem document for a refusal Litestar answers in another format, if this is one."""
    path = scope.get("path", "")
    if status == 400 and scope.get("method") == "OPTIONS" and content_type.startswith("text/plain"):
        # Litestar's CORS middleware refuses a preflight with a text/plain 400.
        detail = "the preflight was refused: this origin, method or header is not allowed"
        return _problem(400, "cors_refused", "Cross-origin request refused", detail, path)
    if status == 404 and path.startswith("/schema") and content_type.startswith("text/html"):
        # Litestar's OpenAPI router answers unknown paths under /schema with an HTML page.
        return _problem(404, "not_found", "Not found", "Not Found", path)
    return None


async def refused_preflight_as_problem(message: Message, scope: Scope) -> None:
    """Every refusal is a problem document: also a refused CORS preflight and an unknown page
    under /schema, which Litestar answers as text and HTML (nothing is granted either way)."""
    state: Any = scope
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        body = _replacement(message["status"], headers.get("content-type", ""), scope)
        if body is None:
            return
        state[REFUSED_PREFLIGHT] = body
        headers["content-type"] = PROBLEM_JSON
        headers["content-length"] = str(len(body))
    elif message["type"] == "http.response.body" and REFUSED_PREFLIGHT in state:
        message["body"] = state.pop(REFUSED_PREFLIGHT)
        message["more_body"] = False


class RefuseNul(ASGIMiddleware):
    """400 for a NUL character in the path or the query: no route or parameter means one,
    and a database would refuse to store it (PostgreSQL answers an error, which was a 500)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        query = scope.get("query_string", b"").lower()
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            raise ValidationFailed("the path and the query may not contain NUL characters")
        await next_app(scope, receive, send)
