"""The framework floor: a Litestar POST that decodes the same body and answers like Scoreboard."""

from __future__ import annotations

from litestar import Litestar, get, post


@post("/api/scores/update", status_code=200)
async def hello(data: dict[str, str]) -> dict[str, object]:
    return {"success": True, "newScore": 0, "rank": 1}


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[hello, healthz])
