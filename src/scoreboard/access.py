"""The access log, ``X-Request-ID`` and the HTTP latency histogram, for every request.

One ASGI wrapper around the whole application (``wrap``): Litestar's own middleware wraps each
route, so a 404 or 405 (no route) would never reach it. Wrapped outside Litestar's exception
handling, it sees every response: the handlers', the 404s and 405s, and the refusals of the
other middleware (a 400 from ``RefuseNul``, a 429 from ``PerAddressLimit``, a 401 from the
bearer check).

Each HTTP request gets a request id (the client's ``X-Request-ID`` when well-formed, else a
new one), returned in the response's ``X-Request-ID`` and bound into structlog's context, so
every line the request causes carries it. Its duration is observed in
``scoreboard_http_request_duration_seconds`` by method, route template and status, and one
``request`` line is logged: request id, method, route template, status, duration, user id and
client address. Never the raw path or the query: a ``?ticket=`` or ``token=`` stays out, and
so do the labels' unbounded values. A WebSocket gets one ``websocket`` line when it ends.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import Histogram

__all__ = ["REQUEST_ID_HEADER", "UNMATCHED", "RequestLog", "request_id", "wrap"]

REQUEST_ID_HEADER = b"x-request-id"
# What a client may choose as its request id: anything else (too long, spaces, control
# characters, quotes) is replaced, so the header and the logs never carry attacker bytes.
WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"  # the route label of a request no route took (404, 405)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = structlog.get_logger("scoreboard.access")


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when well-formed, else a new uuid4 (hex)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if WELL_FORMED_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def _with_header(message: Any, header: tuple[bytes, bytes]) -> None:
    # A new list: a response's header list may be shared by the responses of a cache.
    message["headers"] = [*message.get("headers", ()), header]


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class RequestLog:
    """The ASGI wrapper: see the module's docstring."""

    def __init__(self, app: ASGIApp, durations: Histogram, *, access_log: bool = True) -> None:
        self.app = app
        self._durations = durations
        self._access_log = access_log
        # The histogram's children by label values: no lock and no label check per request.
        self._children: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            await self._http(scope, receive, send)
        elif scope["type"] == ScopeType.WEBSOCKET:
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        rid = request_id(scope)
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        status = 0
        end = 0.0

        async def send_with_id(message: Message) -> None:
            nonlocal status, end
            if message["type"] == "http.response.start":
                status = message["status"]
                _with_header(message, header)
                await send(message)
            elif not message.get("more_body", False):  # the last of the body
                await send(message)
                end = time.perf_counter()
            else:
                await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # No response started: the server answers 500 for the app.
            self._done(scope, status or 500, (end or time.perf_counter()) - start)
            structlog.contextvars.reset_contextvars(**tokens)

    def _done(self, scope: HTTPScope, status: int, seconds: float) -> None:
        route = scope.get("path_template") or UNMATCHED
        method = scope["method"]
        label = method if method in METHODS else "other"
        key = (label, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._durations.labels(label, route, str(status))
        child.observe(seconds)
        if self._access_log:
            user = scope.get("user")
            log.info(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                user_id=getattr(user, "user_id", None),
                client=_client(scope),
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        rid = request_id(scope)
        header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        accepted = False
        code: Any = None  # the first close code: the server's, or the client's

        async def send_with_id(message: Message) -> None:
            nonlocal accepted, code
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
                _with_header(message, header)
            elif kind == "websocket.close" and code is None:
                code = message.get("code", 1000)
            await send(message)

        async def receive_close() -> Any:
            nonlocal code
            message = await receive()
            if message["type"] == "websocket.disconnect" and code is None:
                code = message.get("code", 1005)
            return message

        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, receive_close, send_with_id)
        finally:
            if self._access_log:
                log.info(
                    "websocket",
                    route=scope.get("path_template") or UNMATCHED,
                    outcome="accepted" if accepted else "refused",
                    close_code=code,
                    duration_ms=round((time.perf_counter() - start) * 1000, 3),
                    client=_client(scope),
                )
            structlog.contextvars.reset_contextvars(**tokens)


def wrap(app: Litestar, durations: Histogram, *, access_log: bool = True) -> None:
    """Puts ``RequestLog`` around everything the app does for a request: its routing, its
    exception handling and CORS. (Its ``before_send`` hooks still run on every message.)"""
    app.asgi_handler = RequestLog(app.asgi_handler, durations, access_log=access_log)
