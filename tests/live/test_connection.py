"""One live connection's outbox against a socket that is slow to take frames (a fake socket:
the end-to-end tests in test_live_ws.py cannot hold one connection's sender at a chosen
point)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from scoreboard.live.connection import Frame, LiveConnection
from scoreboard.live.protocol import text_frame


class SlowSocket:
    """Takes a frame only when the test lets it."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}  # no raw send: every frame through send_text
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.closed: int | None = None

    async def send_text(self, frame: str) -> None:
        await self.gate.wait()
        self.gate.clear()
        self.sent.append(frame)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code


class GonePeer:
    """A client that went away (``fails``) or stopped reading (``hangs``): sending the error
    event and/or the close frame raises, or never finishes."""

    def __init__(self, *, send: str = "ok", close: str = "ok") -> None:
        self.send, self.close_mode = send, close
        self.scope: dict[str, Any] = {}
        self.sent: list[str] = []
        self.closed: int | None = None

    @staticmethod
    async def _act(mode: str) -> None:
        if mode == "fails":
            raise RuntimeError("the peer is gone")
        if mode == "hangs":
            await asyncio.Event().wait()

    async def send_text(self, frame: str) -> None:
        await self._act(self.send)
        self.sent.append(frame)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._act(self.close_mode)
        self.closed = code


def connection(socket: object, send_timeout: float = 30) -> LiveConnection:
    return LiveConnection(cast(Any, socket), "viewer", "127.0.0.1", None, send_timeout)


async def feed_until(socket: SlowSocket, done: Callable[[], bool], seconds: float = 3) -> None:
    """Let the socket take frames until ``done``; fail, rather than hang, if that never comes
    (a sender that died, or that never sends)."""
    async with asyncio.timeout(seconds):
        while not done():
            socket.gate.set()
            await asyncio.sleep(0.01)


async def test_latest_wins_per_board_while_the_client_is_behind() -> None:
    """Guards ``LiveConnection.offer_board``: a snapshot waiting to be sent is replaced by a
    newer one. If it kept the oldest, a client that fell behind would be shown a board that
    is no longer true, and stay on it until the next change. Also guards the sender and
    ``_next`` as a whole: a frame offered is sent, once (bounded wait, so a sender that
    dies or never sends fails here instead of hanging)."""
    socket = SlowSocket()
    live = connection(socket)
    sender = asyncio.create_task(live.run_sender())
    live.offer_board("global", "v1")
    await asyncio.sleep(0.01)  # the sender took v1 and waits for the socket
    for version in ("v2", "v3", "v4"):
        live.offer_board("global", version)
    live.offer_board("weekly", "w1")
    await feed_until(socket, lambda: len(socket.sent) >= 3)
    assert socket.sent == ["v1", "v4", "w1"]
    await live.close(1000, "done")
    socket.gate.set()
    await asyncio.wait_for(sender, 5)


async def test_a_send_that_times_out_closes_the_connection() -> None:
    """Guards ``run_sender``'s timeout branch: a client that stops taking frames is closed
    with 1013, not merely logged and waited on."""
    socket = SlowSocket()
    live = connection(socket, send_timeout=0.05)
    sender = asyncio.create_task(live.run_sender())
    live.offer_board("global", "v1")
    await asyncio.wait_for(sender, 5)  # the sender gives up on its own
    assert socket.closed == 1013
    live.offer_board("global", "v2")
    await asyncio.sleep(0.05)
    assert socket.sent == []


async def test_a_forgotten_board_sends_nothing_more() -> None:
    """Guards ``LiveConnection.forget``: unsubscribing drops the board from ``boards`` and
    drops its unsent reset, snapshot and personal score, and nothing of the other boards.
    If it kept them, a client would still get frames for a board it just left (and the
    board would still count towards its limit)."""
    socket = SlowSocket()
    live = connection(socket)
    live.boards.update({"global", "weekly"})
    live.offer_reset("weekly", "weekly-reset")
    live.offer_board("weekly", "weekly-board")
    live.offer_personal("weekly", "weekly-me")
    live.offer_board("global", "global-board")
    live.offer_personal("global", "global-me")
    live.forget("weekly")
    assert live.boards == {"global"}
    sender = asyncio.create_task(live.run_sender())
    await feed_until(socket, lambda: len(socket.sent) >= 2)
    socket.gate.set()
    await asyncio.sleep(0.05)  # nothing else is waiting to go
    assert socket.sent == ["global-board", "global-me"]
    await live.close(1000, "done")
    await asyncio.wait_for(sender, 5)


async def test_close_sends_its_reason_first_and_survives_a_peer_that_is_gone() -> None:
    """Guards ``LiveConnection.close``: the error event goes out before the close frame, with
    the code asked for; a peer that is gone (sending or closing raises) does not make close
    raise, and the close frame is still tried after a failed event. If close raised,
    ``Hub.close_all`` (a gather) would fail the whole shutdown on one vanished client."""
    reading = GonePeer()
    await connection(reading).close(4401, "token expired", '{"type":"error"}')
    assert (reading.sent, reading.closed) == (['{"type":"error"}'], 4401)

    vanished = GonePeer(send="fails")
    await connection(vanished).close(1008, "rules broken", '{"type":"error"}')
    assert (vanished.sent, vanished.closed) == ([], 1008)

    half_closed = GonePeer(close="fails")
    await connection(half_closed).close(1001, "shutting down", '{"type":"error"}')
    assert half_closed.sent == ['{"type":"error"}']


async def test_close_gives_up_on_a_peer_that_takes_nothing() -> None:
    """Guards the time limits in ``LiveConnection.close``: a client that stopped reading
    neither holds the error event nor the close frame forever, and the close frame is still
    tried after the event timed out. Without them one stuck client would hang
    ``Hub.close_all``, hence server shutdown. (About 2 s: the limit is 2 s per step.)"""
    stuck_on_event = GonePeer(send="hangs")
    stuck_on_close = GonePeer(close="hangs")
    await asyncio.wait_for(
        asyncio.gather(
            connection(stuck_on_event).close(1001, "shutting down", '{"type":"error"}'),
            connection(stuck_on_close).close(1001, "shutting down"),
        ),
        8,
    )
    assert stuck_on_event.closed == 1001


# -- a broadcast's frame written straight to the transport (the raw send) ---------------------


class Transport:
    """The raw send of scoreboard.protocols, as the connection sees it: writes while
    ``writable`` (its buffer below the high-water mark), else refuses."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.writable = True

    def write(self, frame: bytes) -> bool:
        if self.writable:
            self.written.append(frame)
        return self.writable


def raw_connection(socket: SlowSocket, transport: Transport) -> LiveConnection:
    live = LiveConnection(cast(Any, socket), "viewer", "127.0.0.1", None, 30, raw=transport)
    live.welcomed = True  # as the endpoint marks it once connection_success has gone
    return live


async def test_nothing_is_written_raw_before_the_welcome() -> None:
    """Guards ``welcomed``: while a connection's later boards are still being subscribed (a
    read each), a broadcast of a board it already follows must wait in the outbox, or it
    reaches the client before connection_success."""
    socket, transport = SlowSocket(), Transport()
    live = LiveConnection(cast(Any, socket), "viewer", "127.0.0.1", None, 30, raw=transport)
    live.push_board("global", frame("early board"))
    assert transport.written == []
    assert live._next() == "early board"


def frame(text: str) -> Frame:
    return Frame(text, text_frame(text))


async def test_an_idle_writable_connection_gets_the_frame_written_at_once() -> None:
    """Guards the raw path: no outbox, no sender woken, the reset before the board; a frame
    whose whole bytes are what a WebSocket client reads as that text."""
    socket, transport = SlowSocket(), Transport()
    live = raw_connection(socket, transport)
    live.push_board("global", frame("board-v1"), frame("reset"))
    live.push_board("global", frame("board-v2"))
    expected = [text_frame("reset"), text_frame("board-v1"), text_frame("board-v2")]
    assert transport.written == expected
    assert not live._wake.is_set()
    assert live._idle()


async def test_a_connection_that_is_not_writable_keeps_only_the_latest_frame() -> None:
    """Guards latest-wins and ordering on the raw path: refused frames wait in the outbox
    (each replacing the last), and once the transport is writable again nothing overtakes
    them: the next frame waits behind them too, then the sender sends only the newest."""
    socket, transport = SlowSocket(), Transport()
    live = raw_connection(socket, transport)
    sender = asyncio.create_task(live.run_sender())
    transport.writable = False
    live.push_board("global", frame("v1"))
    live.push_board("global", frame("v2"))
    transport.writable = True
    live.push_board("global", frame("v3"))  # v2 still waits: v3 must not go ahead of it
    assert transport.written == []
    await feed_until(socket, lambda: bool(socket.sent))
    assert socket.sent == ["v3"]
    live.push_board("global", frame("v4"))  # idle again: straight through
    assert transport.written == [text_frame("v4")]
    await live.close(1000, "done")
    await asyncio.wait_for(sender, 5)


async def test_a_frame_never_overtakes_one_the_sender_is_sending() -> None:
    """Guards ``_sending``: while the sender holds a control reply it has not written, a
    broadcast goes to the outbox, behind it."""
    socket, transport = SlowSocket(), Transport()
    live = raw_connection(socket, transport)
    sender = asyncio.create_task(live.run_sender())
    live.offer_control("pong")
    await asyncio.sleep(0.01)  # the sender took it and waits on the socket
    assert live._idle()
    live.push_board("global", frame("board"))
    assert transport.written == []
    await feed_until(socket, lambda: len(socket.sent) == 2)
    assert socket.sent == ["pong", "board"]
    await live.close(1000, "done")
    await asyncio.wait_for(sender, 5)


async def test_a_reset_written_before_a_refused_board_is_not_sent_twice() -> None:
    socket, transport = SlowSocket(), Transport()
    live = raw_connection(socket, transport)

    class FullAfterOne(Transport):
        def write(self, frame: bytes) -> bool:
            self.writable = not self.written
            return super().write(frame)

    live.raw = full = FullAfterOne()
    live.push_board("global", frame("board"), frame("reset"))
    assert full.written == [text_frame("reset")]
    assert live._next() == "board"
    assert live._next() is None
    await live.close(1000, "done")
    live.push_board("global", frame("late"))
    assert full.written == [text_frame("reset")]
    assert live._next() == "late"


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_001])
def test_a_frame_made_once_reads_as_its_text(size: int) -> None:
    """Guards ``text_frame``'s three length forms: what a WebSocket client reads is the text."""
    text = "é" * (size // 2) + "x" * (size % 2)  # two bytes a character, and one
    assert websockets_text(text_frame(text))[0] == text
    assert len(text.encode()) == size


def websockets_text(raw: bytes) -> tuple[str, bytes]:
    """What the websockets library (the clients of the tests) reads from these bytes."""
    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(raw)
    parser = WsFrame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        parsed = done.value
    assert parsed.opcode is Opcode.TEXT
    assert parsed.fin
    return parsed.data.decode(), raw
