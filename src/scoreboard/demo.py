"""`scoreboard demo`: the service plus simulated players, so the board moves at once.

The players use the public HTTP API like any client: they ask for an action ticket, take
at least its minimum duration to "play", then complete it.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import httpx
import structlog

from scoreboard.app import create_app
from scoreboard.auth.principal import DEFAULT_USER_SCOPES
from scoreboard.auth.tokens import mint_token
from scoreboard.config import Settings
from scoreboard.keys import load_keys
from scoreboard.server import make_server

log = structlog.get_logger("scoreboard.demo")
NAMES = [
    "Ada",
    "Grace",
    "Linus",
    "Margaret",
    "Alan",
    "Barbara",
    "Dennis",
    "Frances",
    "Ken",
    "Radia",
    "Edsger",
    "Hedy",
    "Tim",
    "Katherine",
    "Guido",
    "Anita",
    "Donald",
    "Shafi",
    "Leslie",
    "Sophie",
]


async def _play(client: httpx.AsyncClient, token: str, pause: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        await asyncio.sleep(random.expovariate(1 / pause))
        kind = random.choices(["level_complete", "daily_login", "match_win"], [8, 2, 1])[0]
        issued = await client.post("/api/actions", json={"type": kind}, headers=headers)
        if issued.status_code == 422:  # a custom catalog without this type: use its default
            issued = await client.post("/api/actions", json={}, headers=headers)
        if issued.status_code != 201:
            log.warning("demo_issue_failed", status=issued.status_code)
            continue
        ticket = issued.json()
        ready = datetime.fromisoformat(ticket["notBefore"]) - datetime.now(UTC)
        await asyncio.sleep(max(0.0, ready.total_seconds()) + random.uniform(0.05, 0.5))
        body = {"actionId": ticket["actionId"], "timestamp": datetime.now(UTC).isoformat()}
        done = await client.post("/api/scores/update", json=body, headers=headers)
        if done.status_code != 200:
            log.warning("demo_update_failed", status=done.status_code)


async def run_demo(settings: Settings, players: int, rate: float) -> None:
    keys = load_keys(settings)
    app = create_app(settings)
    server = make_server(app, settings)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has only a flag
        await asyncio.sleep(0.05)
    if serving.done():
        return
    base = f"http://{settings.host}:{settings.port}"
    scopes = [s.value for s in DEFAULT_USER_SCOPES]
    names = [
        f"{NAMES[i % len(NAMES)]}{'' if i < len(NAMES) else i // len(NAMES)}"
        for i in range(players)
    ]
    tokens = [
        mint_token(keys, settings, f"demo-{name.lower()}", username=name, scopes=scopes, ttl=86400)
        for name in names
    ]
    print(f"\n  Scoreboard demo: {players} players, about {rate:g} completions/s")
    print(f"  Watch it live:   {base}/?user=demo-{names[0].lower()}\n", flush=True)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        pause = players / rate
        bots = [asyncio.create_task(_play(client, token, pause)) for token in tokens]
        try:
            await serving
        finally:
            for bot in bots:
                bot.cancel()
            await asyncio.gather(*bots, return_exceptions=True)
