"""``/ws/leaderboard`` and ``POST /api/ws-ticket``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog
from litestar import Response, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from scoreboard.auth.guards import ApiRequest, bearer_token, current_principal, requires
from scoreboard.auth.principal import Principal, Scope
from scoreboard.auth.tokens import TokenVerifier
from scoreboard.boards.rules import BOARD_ID_PATTERN
from scoreboard.config import Settings
from scoreboard.errors import InvalidToken, ServiceUnavailable, problem_responses
from scoreboard.live.connection import LiveConnection
from scoreboard.live.hub import Hub, SubscriptionError, TooManyConnectionsError
from scoreboard.live.protocol import (
    KNOWN_MESSAGES,
    MAX_BOARDS_PER_CONNECTION,
    MAX_CLIENT_MESSAGE,
    ClientMessage,
    CloseCode,
    ErrorEvent,
    Ping,
    Pong,
    Resync,
    Subscribe,
    decode_client,
    encode,
)
from scoreboard.live.tickets import WsTicketStore
from scoreboard.metrics import Metrics, close_code_label
from scoreboard.ratelimit import RateLimited, RateLimiter
from scoreboard.records import GLOBAL

log = structlog.get_logger("scoreboard.live")
ASYNCAPI = Path(__file__).parent / "asyncapi.json"
AnySocket = WebSocket[Any, Any, Any]


class WsTicketResponse(msgspec.Struct, rename="camel"):
    ticket: str
    expires_at: datetime


@post(
    "/api/ws-ticket",
    status_code=201,
    guards=[requires(Scope.READ)],
    summary="Trade a bearer token for a single-use WebSocket ticket (30 s)",
    description="Browsers cannot set headers on a WebSocket: connect to "
    "/ws/leaderboard?ticket=<ticket> instead.",
    tags=["live"],
    responses=problem_responses(401, 403, 429, 503),
    operation_id="issueWsTicket",
)
async def issue_ws_ticket(
    request: ApiRequest, ws_tickets: NamedDependency[WsTicketStore]
) -> WsTicketResponse:
    ticket, expires_at = await ws_tickets.issue(current_principal(request))
    return WsTicketResponse(ticket=ticket, expires_at=datetime.fromtimestamp(expires_at, UTC))


class Refusal(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _origin_allowed(socket: AnySocket, settings: Settings) -> bool:
    """Non-browser clients send no Origin; browsers must come from an allowed origin
    (cross-site WebSocket hijacking). The page's own origin counts only when the service is
    reached by address or as localhost: with a DNS name, Origin and Host can both be the
    attacker's name (DNS rebinding), so a public name must be in SCOREBOARD_ALLOWED_ORIGINS."""
    origin = socket.headers.get("origin")
    if origin is None:
        return True
    if origin in settings.allowed_origins or "*" in settings.allowed_origins:
        return True
    netloc = urlsplit(origin).netloc
    return netloc == socket.headers.get("host") and _not_a_dns_name(urlsplit(origin).hostname)


def _not_a_dns_name(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _authenticate(socket: AnySocket) -> Principal | None:
    state = socket.app.state
    settings: Settings = state.settings
    if not _origin_allowed(socket, settings):
        raise Refusal(CloseCode.FORBIDDEN, "origin not allowed")
    limiter: RateLimiter = state.rate_limiter
    address = socket.client.host if socket.client else "unknown"
    try:
        await limiter.enforce(state.rates.ws_connects_per_ip, address)
    except RateLimited as exc:
        raise Refusal(CloseCode.TOO_MANY, "too many connection attempts; " + exc.detail) from exc
    ticket = socket.query_params.get("ticket")
    try:
        token = bearer_token(socket)
        if ticket is not None:
            tickets: WsTicketStore = state.ws_tickets
            principal = await tickets.redeem(ticket)
            if principal is None:
                raise InvalidToken("the ticket is unknown, used or expired")
        elif token is not None:
            verifier: TokenVerifier = state.token_verifier
            principal = await verifier.verify(token)
        elif settings.public_read:
            return None
        else:
            raise InvalidToken("send 'Authorization: Bearer <token>' or '?ticket=<ticket>'")
    except InvalidToken as exc:
        raise Refusal(CloseCode.UNAUTHORIZED, exc.detail) from exc
    except ServiceUnavailable as exc:
        raise Refusal(CloseCode.TRY_AGAIN, exc.detail) from exc
    if not principal.has(Scope.READ):
        raise Refusal(CloseCode.FORBIDDEN, f"the token needs the '{Scope.READ.value}' scope")
    return principal


NO_STATUS = 1005  # a close frame without a code


class _Bucket:
    """Token bucket for inbound messages."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


async def _receive(
    socket: AnySocket, connection: LiveConnection, hub: Hub, settings: Settings
) -> None:
    bucket = _Bucket(settings.ws_messages_per_second, settings.ws_message_burst)
    refused = 0
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            connection.closed_by_peer(message.get("code", NO_STATUS))
            return
        event: dict[str, Any] = dict(message)
        data: str | bytes = event.get("text") or event.get("bytes") or b""
        if len(data) > MAX_CLIENT_MESSAGE:
            limit = f"messages are limited to {MAX_CLIENT_MESSAGE} bytes"
            await connection.close(
                CloseCode.TOO_BIG, limit, encode(ErrorEvent("message_too_big", limit))
            )
            return
        if not bucket.take():
            refused += 1
            if refused > settings.ws_message_burst:
                await connection.close(
                    CloseCode.POLICY,
                    "too many messages",
                    encode(ErrorEvent("rate_limited", "too many messages: closed")),
                )
                return
            connection.offer_control(encode(ErrorEvent("rate_limited", "slow down")))
            continue
        try:
            if not isinstance(data, str):
                raise msgspec.DecodeError("binary frames are not accepted")
            request = decode_client(data)
        except msgspec.ValidationError as exc:
            unknown = "`$.type`" in str(exc) or "`type`" in str(exc)
            connection.offer_control(
                encode(
                    ErrorEvent("unknown_message", f"known messages: {KNOWN_MESSAGES}")
                    if unknown
                    else ErrorEvent("invalid_message", str(exc))
                )
            )
            continue
        except msgspec.DecodeError:
            connection.offer_control(encode(ErrorEvent("malformed_message", "send JSON text")))
            continue
        await _handle(request, connection, hub)


async def _handle(request: ClientMessage, connection: LiveConnection, hub: Hub) -> None:
    if isinstance(request, Ping):
        connection.offer_control(encode(Pong()))
    elif isinstance(request, Resync):
        hub.resync(connection)
    elif isinstance(request, Subscribe):
        try:
            for feed in await hub.subscribe(connection, request.boards):
                hub.snapshot(connection, feed)
        except SubscriptionError as refusal:
            connection.offer_control(encode(ErrorEvent(refusal.code, str(refusal))))
    else:
        hub.unsubscribe(connection, request.boards)


def _requested_boards(socket: AnySocket) -> list[str]:
    """``?board=a,b`` (default: global)."""
    boards = [b.strip() for b in socket.query_params.get("board", GLOBAL).split(",")]
    if len(boards) > MAX_BOARDS_PER_CONNECTION or not all(map(BOARD_ID_PATTERN.match, boards)):
        raise Refusal(
            CloseCode.NOT_FOUND,
            f"board must be 1 to {MAX_BOARDS_PER_CONNECTION} comma-separated board ids",
        )
    return boards


async def _expire(connection: LiveConnection) -> None:
    left = connection.seconds_left()
    if left is None:
        await asyncio.Event().wait()
        return
    await asyncio.sleep(max(0.0, left))
    await connection.close(
        CloseCode.POLICY,
        "token expired",
        encode(ErrorEvent("token_expired", "the token expired: reconnect with a new one")),
    )


# The spec's `error` event, sent before the close frame, so a client can tell "get a new
# ticket" (unauthorized) from "back off" (too_many_*) from "go elsewhere" without parsing
# close reasons.
_REFUSAL_CODES = {
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.TOO_MANY: "too_many_connections",
    CloseCode.TRY_AGAIN: "try_again",
    CloseCode.NOT_FOUND: "unknown_board",
    CloseCode.POLICY: "policy",
}


async def _refuse(socket: AnySocket, close_code: int, code: str, message: str) -> None:
    with contextlib.suppress(Exception):  # the peer may be gone already
        await socket.send_text(encode(ErrorEvent(code, message)))
    await socket.close(code=close_code, reason=message[:120])


@websocket("/ws/leaderboard", exclude_from_auth=True)
async def live_leaderboard(socket: AnySocket, hub: NamedDependency[Hub]) -> None:
    settings: Settings = socket.app.state.settings
    metrics: Metrics = socket.app.state.metrics
    await socket.accept()
    metrics.ws_connects.inc()
    try:
        principal = await _authenticate(socket)
        boards = _requested_boards(socket)
    except Refusal as refusal:
        await _refuse(socket, refusal.code, _REFUSAL_CODES[refusal.code], refusal.reason)
        metrics.ws_closes.labels(close_code_label(refusal.code)).inc()
        return
    connection = LiveConnection(
        socket=socket,
        user_id=principal.user_id if principal else None,
        client_ip=socket.client.host if socket.client else "unknown",
        expires_at=principal.expires_at if principal else None,
        send_timeout=settings.ws_send_timeout,
    )
    try:
        hub.register(connection)
    except TooManyConnectionsError as exc:
        await _refuse(socket, CloseCode.TOO_MANY, "too_many_connections", str(exc))
        metrics.ws_closes.labels(close_code_label(CloseCode.TOO_MANY)).inc()
        return
    try:
        try:
            feeds = await hub.subscribe(connection, boards)
        except SubscriptionError as refusal:
            await _refuse(socket, CloseCode.NOT_FOUND, refusal.code, str(refusal))
            return
        await socket.send_text(hub.welcome(connection, feeds[0]))
        connection.welcomed = True
        for feed in feeds[1:]:
            hub.snapshot(connection, feed)
        tasks = [
            asyncio.create_task(connection.run_sender()),
            asyncio.create_task(_receive(socket, connection, hub, settings)),
            asyncio.create_task(_expire(connection)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await task
        await connection.close(1000, "bye")
    except WebSocketDisconnect as gone:  # the client left before we were done
        connection.closed_by_peer(gone.code)
    except OSError:
        connection.closed_by_peer(None)
    finally:
        hub.unregister(connection)
        metrics.ws_closes.labels(close_code_label(connection.close_code)).inc()
        if connection.too_slow:
            metrics.ws_slow_closes.inc()


@get("/schema/asyncapi.json", include_in_schema=False, exclude_from_auth=True)
async def asyncapi_document() -> Response[bytes]:
    """The AsyncAPI 3 description of /ws/leaderboard (the OpenAPI schema's counterpart)."""
    return Response(ASYNCAPI.read_bytes(), media_type="application/json")
