"""A hostile client costs a server process a fixed amount, whoever it is: real sockets
against a real `scoreboard serve`, memory read from /proc/<pid>/status.

- endless header lines, or one 64 MB header: 431 and closed, memory flat (while a large
  body arriving in the same read as its head is served);
- an idle socket, a half-sent head, a half-sent body: closed within their timeouts;
- more connections than the cap: a clean 503 and close; /healthz answers once the idle ones
  are gone;
- a WebSocket that floods pings and never reads: aborted once its unread replies pass the
  buffer bound, memory flat (before authentication, which is the cheapest case for it).

Each was open in an outside review (issue 12); see SECURITY.md "Connections"."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import BATCH, forge_ticket, game_server, make_token, now_iso
from tests.live.conftest import StartServer
from tests.live.wsclient import raw_upgrade
from tests.server import ServerProcess

pytestmark = pytest.mark.slow
TIMEOUTS = {"SCOREBOARD_HEADER_TIMEOUT": "2", "SCOREBOARD_BODY_TIMEOUT": "2"}
MB = 1024 * 1024


def rss(server: ServerProcess) -> int:
    """Resident memory of the server process, in bytes."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def _open(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes; how long it took and what it sent."""
    began = time.monotonic()
    received = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(65536):
            received += chunk
    return time.monotonic() - began, received


async def test_endless_header_lines_get_431_and_cost_no_memory(start_server: StartServer) -> None:
    server = start_server()
    before = rss(server)

    async def flood() -> bytes:
        """Header lines for 3 s, or until the server answers."""
        reader, writer = await _open(server)
        answer = asyncio.create_task(reader.read(4096))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        deadline = time.monotonic() + 3
        try:
            while time.monotonic() < deadline and not answer.done():
                writer.write(line * 64)
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        try:
            reply = await asyncio.wait_for(answer, 5)
        except (ConnectionResetError, BrokenPipeError):
            reply = b"reset"
        writer.close()
        return reply

    replies = await asyncio.gather(*(flood() for _ in range(4)))
    grown = rss(server) - before
    print(f"RSS growth after 4 header floods: {grown / MB:.1f} MB")
    assert all(reply.startswith(b"HTTP/1.1 431") for reply in replies), replies
    assert grown < 20 * MB
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_one_huge_header_is_refused_not_served(start_server: StartServer) -> None:
    server = start_server()
    reader, writer = await _open(server)
    answer = asyncio.create_task(reader.read(4096))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(64):  # 64 MB, unless the server answers first
            if answer.done():
                break
            writer.write(b"b" * MB)
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    reply = await asyncio.wait_for(answer, 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]


async def test_a_large_body_read_together_with_its_head_is_not_a_large_head(
    start_server: StartServer,
) -> None:
    """A batch of 100 tickets (about 40 KB) written at once, as wrk and many clients do: the
    server reads head and body in one go, and only the head counts against its 32 KiB."""
    server = start_server()
    updates = [
        {"actionId": forge_ticket(f"one-write-{i}"), "timestamp": now_iso()} for i in range(100)
    ]
    body = json.dumps({"updates": updates}).encode()
    assert len(body) > 32 * 1024
    head = (
        f"POST {BATCH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {game_server()}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    reader, writer = await _open(server)
    writer.write(head + body)
    await writer.drain()
    _, reply = await _closed_within(reader, 30)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert reply.count(b'"success":true') == 100, reply[:300]


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, then nothing
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # a head never finished
        b"POST /api/scores/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"actionId":',  # a body never finished
    ],
    ids=["idle", "half-head", "half-body"],
)
async def test_slow_and_idle_connections_are_closed_within_their_timeout(
    start_server: StartServer, sent: bytes
) -> None:
    server = start_server(**TIMEOUTS)
    reader, writer = await _open(server)
    writer.write(sent)
    await writer.drain()
    took, _ = await _closed_within(reader, 10)
    writer.close()
    assert 1.5 <= took <= 5, took


async def test_beyond_the_connection_cap_a_new_connection_gets_503_and_health_recovers(
    start_server: StartServer,
) -> None:
    server = start_server(SCOREBOARD_MAX_CONNECTIONS="20", **TIMEOUTS)
    idle = [await _open(server) for _ in range(20)]
    await asyncio.sleep(0.2)
    reader, writer = await _open(server)
    _, refused = await _closed_within(reader, 5)
    writer.close()
    assert refused.startswith(b"HTTP/1.1 503"), refused
    await asyncio.sleep(3)  # the idle ones time out (2 s); then the process serves again
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    for _, idle_writer in idle:
        idle_writer.close()


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


@pytest.mark.parametrize("authenticated", [True, False], ids=["user", "refused-anonymous"])
async def test_a_ping_flood_that_never_reads_costs_no_memory(
    start_server: StartServer, authenticated: bool
) -> None:
    """A user's socket is aborted once the unread pongs pass the bound; a refused one stops
    answering pings once it sent its close (and is dropped after the close timeout)."""
    server = start_server()
    before = rss(server)
    auth = f"Authorization: Bearer {make_token('flooder')}" if authenticated else "X-No: token"
    # As an attacker would: wait for the upgrade (and, when it is accepted, the first
    # frame), then flood. Pings sent before the handshake completes are not answered yet.
    reader, writer = await raw_upgrade(server, auth)
    async with asyncio.timeout(10):
        await reader.read(1)  # connection_success, or the refusal's first byte
    ping = _frame(0x9, b"p" * 125) * 512  # 64 KiB of pings a write
    sent, aborted = 0, False
    try:
        while sent < 100 * MB:  # never reading a byte of the replies
            writer.write(ping)
            await asyncio.wait_for(writer.drain(), 5)
            sent += len(ping)
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        aborted = True
    grown = rss(server) - before
    print(f"pings sent before the abort: {sent / MB:.1f} MB; RSS growth {grown / MB:.1f} MB")
    writer.close()
    assert grown < 20 * MB
    if authenticated:
        assert aborted, "the server kept a peer that never reads its pongs"
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
