"""Leaderboard reads: ``GET /api/leaderboard`` (the top 10, as every browser polls or loads it)
against a hello-world GET answering the same bytes, measured in the same run on the same
machine, with wrk as the load generator (apt-get install wrk).

Shapes: the embedded one (SQLite, in-process ranking) always; with ``--production`` also
PostgreSQL + Redis (the local servers of the test suite), each on a fresh database and Redis
key prefix. Before the measurement ``--players`` players score (real tickets), so the board
is full; every request carries a player's read token, as a browser's does. The per-address
rate limit is generous (all the load comes from one address).

Run: `.venv/bin/python bench/leaderboard_reads.py --production --seconds 5`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import bearer, forge_ticket, make_token, settings_env  # noqa: E402
from tests.redis_support import REDIS_URL  # noqa: E402
from tests.server import free_port  # noqa: E402

from bench.score_updates import (  # noqa: E402
    EMBEDDED,
    PRODUCTION,
    fresh_backend,
    line,
    ratio,
    run_wrk,
    serve,
)


def wrk_get(port: int, token: str, seconds: int, connections: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/api/leaderboard"
    return run_wrk(["-H", f"Authorization: Bearer {token}", url], seconds, connections)


def seed(port: int, players: int) -> bytes:
    """``players`` players score once each; the leaderboard's bytes afterwards."""
    issued = datetime.now(UTC)  # each ticket opens at the instant of its completion
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for n in range(players):
            user = f"reader-{n}"
            ticket = forge_ticket(user, issued_at=issued)
            body = {"actionId": ticket, "timestamp": issued.isoformat()}
            token = make_token(user, username=f"Reader {n}")
            response = client.post("/api/scores/update", json=body, headers=bearer(token))
            if response.status_code != 200:
                raise RuntimeError(f"seeding the board: {response.status_code} {response.text}")
        board = client.get("/api/leaderboard", headers=bearer(make_token("reader-0")))
        board.raise_for_status()
        assert len(board.json()["leaderboard"]) == min(players, 10), board.text
        return board.content


def measure(
    production: bool, work: Path, args: argparse.Namespace
) -> tuple[dict[str, float], bytes]:
    with fresh_backend(production, 1, work) as (database, redis_prefix):
        port = free_port()
        env = settings_env(
            database, work, SCOREBOARD_PORT=str(port), SCOREBOARD_LOG_LEVEL="warning"
        )
        if redis_prefix:
            env |= {"SCOREBOARD_REDIS_URL": REDIS_URL, "SCOREBOARD_REDIS_PREFIX": redis_prefix}
        server = serve([sys.executable, "-m", "scoreboard", "serve"], env, port)
        try:
            body = seed(port, args.players)
            run = wrk_get(port, make_token("reader-0"), args.seconds, args.connections)
        finally:
            server.terminate()
            server.wait()
    if run["errors"]:
        print(f"warning: {run['errors']:.0f} non-2xx responses", file=sys.stderr)
    return run, body


def measure_floor(body: bytes, work: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    board = work / "leaderboard.json"
    board.write_bytes(body)
    command = [sys.executable, "-m", "uvicorn", "bench.hello_app:app", "--port", str(port)]
    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    server = serve([*command, "--log-level", "warning"], {"HELLO_LEADERBOARD": str(board)}, port)
    try:
        return wrk_get(port, make_token("reader-0"), args.seconds, args.connections)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--players", type=int, default=50, help="players on the board")
    parser.add_argument(
        "--production", action="store_true", help="also PostgreSQL + Redis (local servers)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    shapes = {EMBEDDED: False} | ({PRODUCTION: True} if args.production else {})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {shape: measure(production, work, args) for shape, production in shapes.items()}
        floor = measure_floor(results[EMBEDDED][1], work, args)
    print(
        f"wrk -t1 -c{args.connections} -d{args.seconds}s GET /api/leaderboard (top 10 of "
        f"{args.players} players, {len(results[EMBEDDED][1])} bytes), {os.cpu_count()} cpus"
    )
    line("floor  hello-world GET, same bytes", floor)
    for shape, (run, _) in results.items():
        line(f"{shape}", run)
    for shape, (run, _) in results.items():
        ratio(f"ratio  {shape} / hello-world", run["rps"] / floor["rps"])


if __name__ == "__main__":
    main()
