"""SCOREBOARD_ALERT_WEBHOOK_URL: each new flag reaches a real local receiver as signed JSON,
failed deliveries are retried, and a receiver that hangs never holds up a score update."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from scoreboard.abuse.webhook import SIGNATURE, FlagWebhook, signature
from scoreboard.app import create_app
from scoreboard.metrics import Metrics
from tests.conftest import Backend
from tests.helpers import Api, forge_ticket, new_user, problem

SECRET = "moderation-hook-signing-key"


@dataclass
class Receiver:
    """A tiny HTTP server on loopback: answers each POST with the next status (200 when
    none are left), or holds every request unanswered while ``answering`` is clear."""

    statuses: list[int] = field(default_factory=list)
    answering: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: int = 0  # requests read, answered or not
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {
                    k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.arrived += 1
                await self.answering.wait()
                status = self.statuses.pop(0) if self.statuses else 200
                if status == 200:
                    self.received.append((headers, body))
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/moderation"

    def flags(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    hook.answering.set()
    server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
    hook.port = server.sockets[0].getsockname()[1]
    try:
        yield hook
    finally:
        hook.answering.set()
        server.close()


async def _until(check: Any, wait: float = 10) -> None:
    for _ in range(int(wait / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()


def _forged(user: str) -> str:
    return forge_ticket(user, action_secret="a-key-this-service-never-used-" + "q" * 10)


async def test_a_new_flag_reaches_the_webhook_signed(
    backend: Backend, tmp_path: Path, receiver: Receiver
) -> None:
    settings = backend.settings(
        tmp_path, alert_webhook_url=receiver.url, alert_webhook_secret=SECRET
    )
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        api = Api(client)
        cheat = new_user()
        problem(await api.complete(cheat, _forged(cheat)), 422, "invalid_action")
        await _until(lambda: receiver.received)
        headers, body = receiver.received[0]
        assert headers["content-type"] == "application/json"
        assert headers[SIGNATURE.lower()] == signature(SECRET.encode(), body)
        flag = json.loads(body)
        assert (flag["rule"], flag["policy"], flag["userId"]) == ("forged_ticket", "flag", cheat)
        assert flag["evidence"]["code"] == "invalid_action"
        stored = (
            await client.get(
                "/api/admin/flags",
                params={"userId": cheat, "status": "all"},
                headers={"Authorization": f"Bearer {_admin()}"},
            )
        ).json()["flags"]
        assert [f["id"] for f in stored] == [flag["id"]]
        scrape = (await client.get("/metrics")).text
        assert 'scoreboard_alert_webhook_total{outcome="sent"} 1.0' in scrape


def _admin() -> str:
    from tests.helpers import admin_token

    return admin_token()


async def test_a_failed_delivery_is_retried_until_it_lands(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    metrics = Metrics()
    hook = FlagWebhook(receiver.url, metrics, backoff=0.01)
    await hook.start()
    try:
        hook.offer({"rule": "ticket_replay", "userId": "u1"})
        await _until(lambda: receiver.received)
        assert receiver.arrived == 3
        assert [f["rule"] for f in receiver.flags()] == ["ticket_replay"]
    finally:
        await hook.stop()
    assert 'scoreboard_alert_webhook_total{outcome="sent"} 1.0' in metrics.scrape().decode()


async def test_a_dead_receiver_costs_a_bounded_queue_and_no_wait() -> None:
    metrics = Metrics()
    hook = FlagWebhook(
        "http://127.0.0.1:9/nothing-listens", metrics, queue_size=4, attempts=2, backoff=0.01
    )
    await hook.start()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for i in range(50):
            hook.offer({"rule": "forged_ticket", "n": i})
        assert loop.time() - began < 0.5  # offering never waits on the network
        await _until(lambda: b'outcome="failed"} 4.0' in metrics.scrape())
    finally:
        await hook.stop()
    text = metrics.scrape().decode()
    # One may have been taken off the queue before the rest arrived: 45 or 46 dropped.
    dropped = float(text.split('scoreboard_alert_webhook_total{outcome="dropped"} ')[1].split()[0])
    assert dropped >= 45


async def test_a_hanging_receiver_holds_up_no_score_update(
    backend: Backend, tmp_path: Path, receiver: Receiver
) -> None:
    """Every flag waits on a receiver that never answers, while the updates that raised them
    (and honest ones) are all answered: none of them waited for the webhook."""
    receiver.answering.clear()
    app = create_app(backend.settings(tmp_path, alert_webhook_url=receiver.url))
    async with AsyncTestClient(app=app) as client:
        api = Api(client)
        cheats = [new_user() for _ in range(4)]
        honest = new_user()
        for cheat in cheats:
            response = await asyncio.wait_for(api.complete(cheat, _forged(cheat)), 3)
            problem(response, 422, "invalid_action")
            assert (await asyncio.wait_for(api.score(honest), 3))["success"] is True
        await _until(lambda: receiver.arrived >= 1)
        assert receiver.received == [], "the receiver answered nothing yet"
        receiver.answering.set()  # it comes back: the queued flags are delivered
        await _until(lambda: len(receiver.received) == len(cheats), wait=20)
    assert sorted(f["userId"] for f in receiver.flags()) == sorted(cheats)
