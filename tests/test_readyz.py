"""/readyz under a flood of probes: one database ping a second whatever the rate, so probes
cannot be used to crowd the update path out of the connection pool; still honest when the
database goes away (after at most a second)."""

from __future__ import annotations

import asyncio

import pytest
from litestar.testing import AsyncTestClient

import scoreboard.health
from scoreboard.database import ping as real_ping


async def test_a_flood_of_probes_costs_one_ping_a_second(
    client: AsyncTestClient,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pings = 0

    async def counted(engine: object) -> bool:
        nonlocal pings
        pings += 1
        await asyncio.sleep(0.05)  # a slow database: concurrent probes must share this one
        return await real_ping(engine)  # type: ignore[arg-type]

    monkeypatch.setattr(scoreboard.health, "ping", counted)
    client.app.state.pop("readiness", None)
    replies = await asyncio.gather(*(client.get("/readyz") for _ in range(200)))
    assert {reply.status_code for reply in replies} == {200}
    assert pings == 1

    async def down(engine: object) -> bool:
        return False

    monkeypatch.setattr(scoreboard.health, "ping", down)
    await asyncio.sleep(1.1)  # the cached answer expires
    reply = await client.get("/readyz")
    assert reply.status_code == 503
    assert reply.json()["database"] == "unavailable"
