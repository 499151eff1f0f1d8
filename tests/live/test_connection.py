"""One live connection's outbox against a socket that is slow to take frames (a fake socket:
the end-to-end tests in test_live_ws.py cannot hold one connection's sender at a chosen
point)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from scoreboard.live.connection import LiveConnection


class SlowSocket:
    """Takes a frame only when the test lets it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.closed: int | None = None

    async def send_text(self, frame: str) -> None:
        await self.gate.wait()
        self.gate.clear()
        self.sent.append(frame)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code


def connection(socket: SlowSocket, send_timeout: float = 30) -> LiveConnection:
    return LiveConnection(cast(Any, socket), "viewer", "127.0.0.1", None, send_timeout)


async def test_latest_wins_per_board_while_the_client_is_behind() -> None:
    """Guards ``LiveConnection.offer_board``: a snapshot waiting to be sent is replaced by a
    newer one. If it kept the oldest, a client that fell behind would be shown a board that
    is no longer true, and stay on it until the next change."""
    socket = SlowSocket()
    live = connection(socket)
    sender = asyncio.create_task(live.run_sender())
    live.offer_board("global", "v1")
    await asyncio.sleep(0.01)  # the sender took v1 and waits for the socket
    for version in ("v2", "v3", "v4"):
        live.offer_board("global", version)
    live.offer_board("weekly", "w1")
    while len(socket.sent) < 3:
        socket.gate.set()
        await asyncio.sleep(0.01)
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
