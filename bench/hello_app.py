"""The framework floors: a Litestar POST that decodes the same body and answers like
Scoreboard, and a GET that answers with the bytes of a leaderboard (the file named by
``HELLO_LEADERBOARD``, as the service answered it; else an empty one)."""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get, post

BOARD = (
    Path(os.environ["HELLO_LEADERBOARD"]).read_bytes()
    if os.environ.get("HELLO_LEADERBOARD")
    else b'{"leaderboard":[]}'
)


@post("/api/scores/update", status_code=200)
async def hello(data: dict[str, str]) -> dict[str, object]:
    return {"success": True, "newScore": 0, "rank": 1}


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/api/leaderboard")
async def leaderboard() -> Response[bytes]:
    return Response(BOARD, media_type="application/json")


app = Litestar(route_handlers=[hello, healthz, leaderboard])
