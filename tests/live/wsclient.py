"""A small WebSocket test client over the `websockets` library."""

from __future__ import annotations

import asyncio
import base64
import json
import os
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


async def raw_upgrade(
    server: ServerProcess, *headers: str, host: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket upgrade sent by hand on a plain socket (to send what a client library
    would not: any Host, frames never read...); returns once the server answered 101."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        "GET /ws/leaderboard HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{server.port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    )
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    async with asyncio.timeout(10):
        response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101"), response
    return reader, writer
