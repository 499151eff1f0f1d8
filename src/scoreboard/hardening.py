"""Headers every response carries, errors and 404s included: set in a before_send hook, which
Litestar runs for every message the app sends, matched route or not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def security_headers(*, hsts: bool) -> Callable[[Message, Scope], Awaitable[None]]:
    headers = {**BASE_HEADERS, **({"Strict-Transport-Security": HSTS} if hsts else {})}

    async def add(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            sent = MutableScopeHeaders.from_message(message)
            for name, value in headers.items():
                if name not in sent:
                    sent[name] = value

    return add
