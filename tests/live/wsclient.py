"""A small WebSocket test client over the `websockets` library."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.server import ServerProcess


def ws_url(server: ServerProcess, ticket: str | None = None) -> str:
    base = server.url.replace("http://", "ws://") + "/ws/leaderboard"
    return f"{base}?ticket={ticket}" if ticket else base


async def open_ws(
    server: ServerProcess,
    token: str | None = None,
    *,
    ticket: str | None = None,
    origin: str | None = None,
) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if origin:
        headers["Origin"] = origin
    return await connect(ws_url(server, ticket), additional_headers=headers, open_timeout=10)


async def next_event(ws: ClientConnection, kind: str, wait_up_to: float = 10) -> dict[str, Any]:
    """The next event of this type, skipping others."""

    async def wait() -> dict[str, Any]:
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] == kind:
                return event

    return await asyncio.wait_for(wait(), wait_up_to)


async def closed_with(
    ws: ClientConnection, wait_up_to: float = 10
) -> tuple[int | None, str | None]:
    """Read until the server closes; return its close code and reason."""

    async def drain() -> None:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            return

    await asyncio.wait_for(drain(), wait_up_to)
    return ws.close_code, ws.close_reason
