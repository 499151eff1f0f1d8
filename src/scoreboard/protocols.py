"""uvicorn's HTTP and WebSocket protocols with a fixed cost per connection, for anonymous
clients too (the embedded shape has no proxy in front, and the production shape must not
rely on one):

- a request head (request line and headers) larger than ``max_head`` bytes gets 431 and the
  connection closes; the parser (llhttp) has no limit of its own (a body arriving in the
  same read as its head does not count: batches of scores are large bodies);
- a connection that sends no complete head within ``head_timeout`` seconds of opening (or
  of its previous response) is closed, and so is a request whose body has not all arrived
  within ``body_timeout`` seconds of its head; uvicorn's keep-alive timer only starts after
  a response, so an idle or half-sent request would otherwise stay open for good;
- beyond ``max_connections`` open connections a new one gets 503 and is closed at once,
  before it can hold a file descriptor or any buffer;
- a WebSocket peer that does not read while its outgoing buffer (pongs, close frames,
  boards) grows past ``max_write_buffer`` bytes is aborted, before or after it
  authenticated: a flood of pings must not make the server buffer the replies.

The WebSocket protocol also offers the app a raw send (``RawSend``, the ASGI scope extension
``scoreboard.raw_send``): a frame encoded once for every follower of a board is written as
it is to this connection's transport, with no task, ASGI message or framing per socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from scoreboard.live.protocol import RAW_SEND

MAX_HEAD = 32 * 1024
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MAX_CONNECTIONS = 10_000
MAX_WRITE_BUFFER = 1024 * 1024
LINGER = 1.0  # seconds a refused connection is read and ignored before it is closed


def _plain_response(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: " + str(len(text)).encode() + b"\r\n\r\n" + text
    )


TOO_LARGE = _plain_response(
    b"431 Request Header Fields Too Large", b"the request line and headers are too large\n"
)
BUSY = _plain_response(b"503 Service Unavailable", b"too many connections; retry later\n")


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds every connection of one server shares (from the settings)."""

    max_head: int = MAX_HEAD
    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    max_write_buffer: int = MAX_WRITE_BUFFER


P = TypeVar("P", bound=type)


def bounded(protocol: P, limits: Limits) -> P:
    """The protocol class with these limits (uvicorn instantiates it per connection)."""
    made = type(protocol.__name__, (protocol,), {"limits": limits})
    return cast(P, made)


class BoundedHttpProtocol(HttpToolsProtocol):
    limits = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_tail = b""  # the head's last bytes so far: its end may straddle two reads
        self._in_head = True  # waiting for (the rest of) a request head
        self._deadline: asyncio.TimerHandle | None = None
        self._discarding = False  # refused: what still arrives is dropped until the close

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        self._arm(self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_head:
            # One read may hold the head and (part of) the body: only what comes before the
            # blank line ending the head counts against the head's bound.
            room = self.limits.max_head - self._head_bytes
            if len(data) > room and not _ends_head(self._head_tail + data[: max(room, 0)]):
                self._refuse_head()
                return
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data[-3:])[-3:]
        super().data_received(data)

    def _refuse_head(self) -> None:
        """431, then a lingering close: stop sending, drop whatever still arrives for a
        moment, then close. Closing at once with unread bytes would reset the connection
        and the client might never see why."""
        self._in_head = False
        self._discarding = True
        self.transport.write(TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._head_tail = b""
        super().on_headers_complete()
        if self.parser is not None and self.parser.should_upgrade():
            self._disarm()  # a WebSocket now: its own protocol bounds it
        else:
            self._arm(self.limits.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()  # the request is in: the app answers in its own time
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request head (uvicorn's keep-alive timer runs too).
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""
        if not self.transport.is_closing():
            self._arm(self.limits.head_timeout)


def _ends_head(received: bytes) -> bool:
    """Does this stretch of a request hold the blank line that ends its head (CRLF or bare
    LF line endings)?"""
    return b"\n\r\n" in received or b"\n\n" in received


class RawSend:
    """Writes a whole frame straight to one WebSocket's transport: only while the connection
    is open, negotiated no extension (a frame would need transforming) and is writable (its
    write buffer below the high-water mark). Otherwise False: the app sends it the usual way,
    which waits for the peer to read (and times out for one that does not)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: BoundedWebSocketProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        protocol = self._protocol
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.handshake_complete
            or protocol.initial_response is not None
            or protocol.conn.extensions
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(frame)
        return True


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    limits = Limits()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # not made for a refused handshake
        if scope is not None:  # the app's task starts after this returns
            scope["extensions"][RAW_SEND] = RawSend(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        transport = self.transport
        if (
            not transport.is_closing()
            and transport.get_write_buffer_size() > self.limits.max_write_buffer
        ):
            transport.abort()  # it sends and never reads: stop buffering for it
