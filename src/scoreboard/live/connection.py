"""One WebSocket client, with an outbox that can never grow: per board it follows (at most
MAX_BOARDS_PER_CONNECTION), the latest leaderboard, the latest reset and the latest personal
score; and a few control replies. A client that stops reading holds up only its own sender
task, and is closed when a send takes longer than the send timeout.

A board broadcast skips the outbox when it can: with the server's raw send
(``scoreboard.protocols.RawSend``), an idle connection (nothing waiting, nothing being sent)
whose transport is writable gets the frame, encoded once for every follower, written as it
is: no task wakes, nothing is framed again. Any other connection gets it in its outbox as
before, so latest-wins and the slow-client close hold: a client that stops reading fills its
buffer, its transport stops being writable, and from then on its frames wait (replacing each
other) for a sender that times out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import structlog
from litestar import WebSocket

from scoreboard.live.protocol import RAW_SEND, CloseCode

log = structlog.get_logger("scoreboard.live")
MAX_CONTROL = 8


class RawWriter(Protocol):
    def write(self, frame: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Frame:
    """One event for many sockets: its text (the outbox's) and the whole WebSocket frame
    (the raw send's), each made once."""

    text: str
    raw: bytes


@dataclass(eq=False)
class LiveConnection:
    socket: WebSocket[Any, Any, Any]
    user_id: str | None
    client_ip: str
    expires_at: float | None
    send_timeout: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    boards: set[str] = field(default_factory=set)  # the boards it follows
    _resets: dict[str, str] = field(default_factory=dict)
    _boards: dict[str, str] = field(default_factory=dict)
    _personal: dict[str, str] = field(default_factory=dict)
    _control: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_CONTROL)
    )
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False
    close_code: int | None = None  # how it ended: ours, the peer's, or None (it vanished)
    too_slow: bool = False
    _sending: bool = False  # the sender holds a frame it has not written yet
    # The welcome (connection_success) has gone: until then nothing may be written raw, so
    # a broadcast of a board followed while later ones are subscribed waits behind it.
    welcomed: bool = False
    raw: RawWriter | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.raw is None:
            extensions = self.socket.scope.get("extensions") or {}
            self.raw = cast(RawWriter | None, extensions.get(RAW_SEND))

    def push_board(self, board: str, frame: Frame, reset: Frame | None = None) -> None:
        """A broadcast's frame (after the reset of a new period, if any): written at once
        when the connection is idle and writable, else offered to the outbox."""
        idle = self.welcomed and not self._sending and not self._closed and self._idle()
        raw = self.raw if idle else None
        if raw is not None and (reset is None or raw.write(reset.raw)):
            if not raw.write(frame.raw):
                self.offer_board(board, frame.text)
            return
        if reset is not None:
            self.offer_reset(board, reset.text)
        self.offer_board(board, frame.text)

    def _idle(self) -> bool:
        return not (self._control or self._resets or self._boards or self._personal)

    def offer_board(self, board: str, frame: str) -> None:
        """Latest wins per board: an unsent older snapshot is simply replaced."""
        self._boards[board] = frame
        self._wake.set()

    def offer_reset(self, board: str, frame: str) -> None:
        """Sent before the board's next snapshot, which then shows the new period."""
        self._resets[board] = frame
        self._wake.set()

    def offer_personal(self, board: str, frame: str) -> None:
        self._personal[board] = frame
        self._wake.set()

    def offer_control(self, frame: str) -> None:
        self._control.append(frame)
        self._wake.set()

    def forget(self, board: str) -> None:
        """Unsubscribed: drop what was waiting for that board."""
        self.boards.discard(board)
        for pending in (self._resets, self._boards, self._personal):
            pending.pop(board, None)

    def _next(self) -> str | None:
        if self._control:
            return self._control.popleft()
        for pending in (self._resets, self._boards, self._personal):
            if pending:
                board = next(iter(pending))
                return pending.pop(board)
        return None

    async def run_sender(self) -> None:
        """Send until closed; close the socket if a client stops reading."""
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while (frame := self._next()) is not None:
                self._sending = True
                try:
                    # asyncio.timeout, not wait_for: no extra task per send, which at
                    # thousands of sockets is what makes the garbage collector pause.
                    async with asyncio.timeout(self.send_timeout):
                        await self.socket.send_text(frame)
                except TimeoutError:
                    log.info("ws_client_too_slow", connection=self.id)
                    self.too_slow = True
                    await self.close(CloseCode.TRY_AGAIN, "too slow to keep up; reconnect")
                    return
                finally:
                    self._sending = False

    async def close(self, code: int, reason: str, event: str | None = None) -> None:
        """Close with ``code``; ``event`` (an encoded ``error`` event) goes first, for a peer
        that still reads (not for one closed for being too slow: it would not get it)."""
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self._wake.set()
        with contextlib.suppress(Exception):
            if event is not None:
                await asyncio.wait_for(self.socket.send_text(event), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.socket.close(code=code, reason=reason), 2)

    def closed_by_peer(self, code: int | None) -> None:
        """The client closed (or vanished): nothing more to send, no close frame to send."""
        if not self._closed:
            self._closed, self.close_code = True, code
            self._wake.set()

    def seconds_left(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - time.time()
