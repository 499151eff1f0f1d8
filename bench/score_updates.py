"""Score update throughput, as ratios against floors measured in the same run on the same
machine, with wrk as the load generator (apt-get install wrk).

Shapes: the embedded one (SQLite, in-process ranking) always; with ``--production`` also
PostgreSQL + Redis (the local servers of the test suite). Each shape is measured with the
action type "instant" feeding 1 board (tests/actions.toml: "global") and 3 boards
(tests/three_boards.toml: "global", a weekly and a daily board),
so the cost of a board fed is the ratio 3 boards / 1 board. ``--boards 1`` or ``--boards 3``
measures one of them only. Every run gets a fresh database and Redis key prefix, so no run
sees another's rows. ``--repeat K`` runs each (shape, boards) K times, alternating the board
counts, and reports the run with the median throughput (for a machine with other load).

Floors:

- hello: a Litestar hello-world POST on uvicorn with the same settings (the framework floor);
- commit: one SQLite INSERT + COMMIT per update with synchronous=FULL on the same disk (the
  best a one-transaction-per-request design could do).

Every score update sent is a distinct valid ticket (pre-signed, not timed), so each one is a
real, durable, exactly-once write. Every abuse rule is on at its default, the velocity rules
too (each update is counted against them): the tickets go round-robin to enough players that
none of them goes over a rule (``--users``, by default one per MAX_PER_PLAYER tickets, under
the default 30 actions a minute), and a refusal would show as a non-2xx warning. The
per-address and per-user rate limits are generous (all the load comes from one address).
Tickets and their timestamps are made when a run starts, so a run must stay within the clock
skew (30 s) and the tickets' 60 s.

``--metrics-cost`` also runs 1 board with the Prometheus metrics off (SCOREBOARD_METRICS=false)
and on, alternating, and prints their ratio: what the metrics cost the update path.

``--workers N`` (with ``--production``) also measures the production shape, 1 board, served by
``scoreboard serve --workers N`` against one process, alternating ``--repeat`` times, and
prints their ratio and the workers' ratio to the hello-world floor (itself one process).

``--batch N`` also measures POST /api/scores/batch against single updates, 1 board, in each
shape, alternating ``--repeat`` times: a game server's token (``scores:submit``) sends batches
of N pre-signed tickets of the same players, so each item is the same durable, exactly-once
write as a single update. Both are reported as items (audit rows the database holds after
the run) per second, and their ratio is the batch's gain.

Run: `make bench`, or `.venv/bin/python bench/score_updates.py --production --seconds 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis as redis_sync  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from tests.helpers import (  # noqa: E402
    ACTIONS_FILE,
    bearer,
    forge_ticket,
    make_token,
    settings_env,
)
from tests.postgres import temporary_database  # noqa: E402
from tests.redis_support import REDIS_URL  # noqa: E402
from tests.server import free_port  # noqa: E402

from scoreboard.database import create_engine  # noqa: E402
from scoreboard.tables import score_updates  # noqa: E402

# Tickets per player: under the default velocity rules (30 actions and 1,000 points a minute;
# an "instant" ticket is 10 points), so honest players are never refused.
MAX_PER_PLAYER = 24

# The 3-board catalog: "instant" as in tests/actions.toml (points 10, the points the forged
# tickets carry), but counting on an all-time, a weekly and a daily board.
THREE_BOARDS = ROOT / "tests" / "three_boards.toml"
BOARD_NAMES = {1: "global", 3: "global, weekly, daily"}
EMBEDDED, PRODUCTION = "embedded SQLite", "PostgreSQL + Redis"
Results = dict[str, dict[int, dict[str, float]]]  # shape -> boards fed -> wrk figures
WIDTH = 44  # label column
UPDATE, BATCH = "/api/scores/update", "/api/scores/batch"


def write_requests(path: Path, count: int, users: int, batch: int = 0) -> None:
    """``count`` distinct tickets of ``users`` players: one update per line, sent with the
    player's token, or (``batch``) that many per line, sent with a game server's token."""
    tokens = [make_token(f"user-{u}", username=f"Player {u}", ttl=3600) for u in range(users)]
    server = make_token("bench-server", scopes=("scores:submit",), ttl=3600)
    issued = datetime.now(UTC)  # every ticket opens at the same instant as the timestamp
    stamp = issued.isoformat()
    updates = [
        {"actionId": forge_ticket(f"user-{i % users}", issued_at=issued), "timestamp": stamp}
        for i in range(count)
    ]
    with path.open("w") as out:
        if not batch:
            for i, update in enumerate(updates):
                out.write(f"{tokens[i % users]}\t{json.dumps(update)}\n")
            return
        for start in range(0, count - batch + 1, batch):
            out.write(f"{server}\t{json.dumps({'updates': updates[start : start + batch]})}\n")


def audit_rows(database: str) -> int:
    """Score changes the database holds: what the service acknowledged, durably."""

    async def count() -> int:
        engine = create_engine(database)
        try:
            async with engine.connect() as conn:
                query = select(func.count()).select_from(score_updates)
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def actions_file(boards: int) -> Path:
    """The catalog whose "instant" feeds that many boards."""
    return ACTIONS_FILE if boards == 1 else THREE_BOARDS


@contextmanager
def fresh_backend(production: bool, boards: int, work: Path) -> Iterator[tuple[str, str | None]]:
    """A database URL and Redis prefix (None: embedded) that no other run has written to."""
    run = f"{boards}-boards-{uuid.uuid4().hex[:8]}"
    if not production:
        yield f"sqlite+aiosqlite:///{work}/embedded-{run}.db", None
        return
    prefix = f"bench:{os.getpid()}:{run}:"
    with temporary_database() as database:
        try:
            yield database, prefix
        finally:
            redis_sync.Redis.from_url(REDIS_URL).eval(
                "for _,k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end",
                0,
                prefix + "*",
            )


def serve(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{args} did not start")


def run_wrk(arguments: list[str], seconds: int, connections: int) -> dict[str, float]:
    """wrk with one thread, ``connections`` for ``seconds``, and its figures parsed."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *arguments]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    if run.stderr.strip():  # replay.lua names the first refusal of each status
        print(run.stderr.strip(), file=sys.stderr)
    return parse_wrk(run.stdout)


def wrk(
    port: int, requests: Path, seconds: int, connections: int, path: str = UPDATE
) -> dict[str, float]:
    script = ["-s", str(ROOT / "bench" / "replay.lua"), f"http://127.0.0.1:{port}"]
    return run_wrk([*script, "--", str(requests), path], seconds, connections)


def parse_wrk(output: str) -> dict[str, float]:
    """wrk's --latency report: requests per second, p50 and p99 (ms), requests, non-2xx."""

    def ms(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", output)
        assert match, output
        return float(match[1]) * {"us": 0.001, "ms": 1, "s": 1000}[match[2]]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    assert total, output
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),  # type: ignore[index]
        "p50": ms("50%"),
        "p99": ms("99%"),
        "requests": float(total[1]),
        "errors": float(errors[1]) if errors else 0.0,
    }


def check_boards(port: int, boards: int) -> None:
    """One update outside the measured ones: a catalog mistake would otherwise be measured
    silently as a run with fewer boards."""
    token = make_token("bench-probe", username="probe")
    body = {"actionId": forge_ticket("bench-probe"), "timestamp": datetime.now(UTC).isoformat()}
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/scores/update", json=body, headers=bearer(token)
    )
    response.raise_for_status()
    fed = [result["board"] for result in response.json()["boards"]]
    if len(fed) != boards:
        raise RuntimeError(f"expected {boards} boards fed, the service fed {fed}")


def measure_scoreboard(
    production: bool,
    boards: int,
    work: Path,
    requests: Path,
    args: argparse.Namespace,
    metrics: bool = True,
    batch: int = 0,
    workers: int = 1,
) -> dict[str, float]:
    """One server on a fresh backend under wrk; ``batch``: batches of that many tickets;
    ``workers``: `serve --workers`. ``items`` is what the database holds afterwards (the probe
    update aside)."""
    with fresh_backend(production, boards, work) as (database, redis_prefix):
        port = free_port()
        env = settings_env(
            database,
            work,
            SCOREBOARD_PORT=str(port),
            SCOREBOARD_LOG_LEVEL="warning",
            SCOREBOARD_ACTIONS_FILE=str(actions_file(boards)),
            SCOREBOARD_METRICS="true" if metrics else "false",
            SCOREBOARD_WORKERS=str(workers),
        )
        if redis_prefix:
            env |= {"SCOREBOARD_REDIS_URL": REDIS_URL, "SCOREBOARD_REDIS_PREFIX": redis_prefix}
        server = serve([sys.executable, "-m", "scoreboard", "serve"], env, port)
        try:
            check_boards(port, boards)
            # Fresh timestamps, within the skew.
            write_requests(requests, args.tickets, args.users, batch)
            if batch:
                run = wrk(port, requests, args.seconds, args.batch_connections, BATCH)
            else:
                run = wrk(port, requests, args.seconds, args.connections)
        finally:
            server.terminate()
            server.wait()
        run["items"] = audit_rows(database) - 1
    run["items_per_s"] = run["items"] / args.seconds
    if run["requests"] * max(batch, 1) > args.tickets or run["errors"]:
        print(
            f"warning: {boards} board(s), {'production' if production else 'embedded'}: "
            f"{run['errors']:.0f} non-2xx responses (raise --tickets?)",
            file=sys.stderr,
        )
    return run


def measure_shape(
    production: bool, boards: list[int], work: Path, requests: Path, args: argparse.Namespace
) -> dict[int, dict[str, float]]:
    """Each board count ``--repeat`` times, alternating, so that load which comes and goes
    on the machine falls on both alike; the run with the median throughput stands."""
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in boards}
    for _ in range(args.repeat):
        for n in boards:
            runs[n].append(measure_scoreboard(production, n, work, requests, args))
    return {n: sorted(done, key=lambda run: run["rps"])[len(done) // 2] for n, done in runs.items()}


def alternate(
    first: Callable[[], dict[str, float]],
    second: Callable[[], dict[str, float]],
    args: argparse.Namespace,
    by: str = "rps",
) -> tuple[dict[str, float], dict[str, float]]:
    """Two measurements alternating ``--repeat`` times, so that load which comes and goes on
    the machine falls on both alike; the median run of each (by ``by``) stands."""
    runs: tuple[list[dict[str, float]], list[dict[str, float]]] = ([], [])
    for _ in range(args.repeat):
        runs[0].append(first())
        runs[1].append(second())

    def median(done: list[dict[str, float]]) -> dict[str, float]:
        return sorted(done, key=lambda run: run[by])[len(done) // 2]

    return median(runs[0]), median(runs[1])


def measure_metrics_cost(
    production: bool, work: Path, requests: Path, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """1 board with metrics on and off (SCOREBOARD_METRICS=false)."""
    return alternate(
        lambda: measure_scoreboard(production, 1, work, requests, args, metrics=True),
        lambda: measure_scoreboard(production, 1, work, requests, args, metrics=False),
        args,
    )


def measure_workers(
    work: Path, requests: Path, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """The production shape, 1 board, as one process and as `serve --workers N`."""
    return alternate(
        lambda: measure_scoreboard(True, 1, work, requests, args),
        lambda: measure_scoreboard(True, 1, work, requests, args, workers=args.workers),
        args,
    )


def measure_batches(
    production: bool, work: Path, requests: Path, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """1 board, single updates and batches of ``--batch`` (by items per second)."""
    return alternate(
        lambda: measure_scoreboard(production, 1, work, requests, args),
        lambda: measure_scoreboard(production, 1, work, requests, args, batch=args.batch),
        args,
        by="items_per_s",
    )


def measure_hello(requests: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    hello_cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.hello_app:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = serve(hello_cmd, {}, port)
    try:
        return wrk(port, requests, args.seconds, args.connections)
    finally:
        server.terminate()
        server.wait()


def commit_floor(directory: Path, count: int) -> float:
    db = sqlite3.connect(directory / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    began = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
        db.execute("COMMIT")
    db.close()
    return count / (time.perf_counter() - began)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--users",
        type=int,
        help=f"players the tickets go to (default: one per {MAX_PER_PLAYER} tickets, so the "
        "velocity rules refuse none of them)",
    )
    parser.add_argument(
        "--tickets", type=int, default=60_000, help="must exceed what one run sends"
    )
    parser.add_argument(
        "--production", action="store_true", help="also PostgreSQL + Redis (local servers)"
    )
    parser.add_argument(
        "--boards",
        type=int,
        nargs="+",
        choices=sorted(BOARD_NAMES),
        default=sorted(BOARD_NAMES),
        help="boards each update feeds (default: both 1 and 3)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each (shape, boards); the median stands"
    )
    parser.add_argument(
        "--metrics-cost",
        action="store_true",
        help="also measure 1 board with SCOREBOARD_METRICS=false: the cost of the metrics",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="also measure POST /api/scores/batch with N tickets a request (1-100) against "
        "single updates, 1 board",
    )
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=4,
        help="wrk connections sending batches (default 4: a game server's few; each holds "
        "a whole batch in flight)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="also measure the production shape (1 board) with `serve --workers N` against "
        "one process (needs --production)",
    )
    args = parser.parse_args()
    if args.workers and not args.production:
        parser.error("--workers measures the production shape: add --production")
    if not 0 <= args.batch <= 100:
        parser.error("--batch takes 1 to 100 tickets a request")
    if args.users is None:
        args.users = -(-args.tickets // MAX_PER_PLAYER)
    return args


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    boards = sorted(set(args.boards))
    shapes = {EMBEDDED: False} | ({PRODUCTION: True} if args.production else {})

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        requests = work / "requests.tsv"
        write_requests(requests, args.tickets, args.users)
        hello = measure_hello(requests, args)
        results: Results = {
            shape: measure_shape(production, boards, work, requests, args)
            for shape, production in shapes.items()
        }
        costs = {
            shape: measure_metrics_cost(production, work, requests, args)
            for shape, production in shapes.items()
            if args.metrics_cost
        }
        batches = {
            shape: measure_batches(production, work, requests, args)
            for shape, production in shapes.items()
            if args.batch
        }
        workers = measure_workers(work, requests, args) if args.workers else None
        commits = commit_floor(work, 3000)
    report(args, hello, commits, results)
    if workers is not None:
        one, many = workers
        print(f"\n{PRODUCTION}: serve --workers {args.workers} against one process (1 board)")
        line("  one process", one)
        line(f"  --workers {args.workers}", many)
        ratio(f"  ratio  --workers {args.workers} / one process", many["rps"] / one["rps"])
        label = f"  ratio  --workers {args.workers}: updates / hello-world"
        ratio(label, many["rps"] / hello["rps"])
    for shape, (on, off) in costs.items():
        print(f"\n{shape}: the cost of the metrics (1 board)")
        line("  metrics on", on)
        line("  metrics off (SCOREBOARD_METRICS=false)", off)
        detail = f"req/s   p50 x{on['p50'] / off['p50']:.2f}   p99 x{on['p99'] / off['p99']:.2f}"
        ratio("  ratio  metrics on / off", on["rps"] / off["rps"], detail)
    for shape, (single, batched) in batches.items():
        print(
            f"\n{shape}: batches of {args.batch} against single updates (1 board; "
            f"-c{args.batch_connections} for batches, -c{args.connections} for single updates)"
        )
        line("  single updates", single, items=True)
        line(f"  batches of {args.batch} (scores:submit)", batched, items=True)
        ratio(
            "  ratio  batch items/s / single updates/s",
            batched["items_per_s"] / single["items_per_s"],
        )


def report(
    args: argparse.Namespace, hello: dict[str, float], commits: float, results: Results
) -> None:
    repeats = f", median of {args.repeat} alternating runs" if args.repeat > 1 else ""
    print(
        f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.users} users, "
        f"{os.cpu_count()} cpus{repeats}"
    )
    per_player = -(-args.tickets // args.users)
    print(
        f"abuse rules on at their defaults, velocity rules included: at most {per_player} "
        f"tickets per player; rate limits generous (one client address)"
    )
    line("floor  hello-world POST", hello)
    print(f"{'floor  SQLite commit per update':{WIDTH}}{commits:9.0f} commits/s (synchronous=FULL)")
    for shape, runs in results.items():
        print(f"\n{shape}")
        for n, run in runs.items():
            line(f"  {boards_label(n)}: {BOARD_NAMES[n]}", run)
        if len(runs) == 2:
            board_cost(runs[1], runs[3])
        for n, run in runs.items():
            ratio(f"  ratio  {boards_label(n)}: updates / hello-world", run["rps"] / hello["rps"])
        if shape == EMBEDDED:  # the commit floor is SQLite's
            for n, run in runs.items():
                ratio(f"  ratio  {boards_label(n)}: updates / commit floor", run["rps"] / commits)
    if PRODUCTION in results:
        print(f"\n{PRODUCTION} / {EMBEDDED}")
        for n, run in results[PRODUCTION].items():
            ratio(
                f"  ratio  {boards_label(n)}: production / embedded",
                run["rps"] / results[EMBEDDED][n]["rps"],
            )


def board_cost(one: dict[str, float], three: dict[str, float]) -> None:
    """What feeding 3 boards instead of 1 costs: throughput kept, latencies multiplied."""
    p50, p99 = three["p50"] / one["p50"], three["p99"] / one["p99"]
    detail = f"req/s   p50 x{p50:.2f}   p99 x{p99:.2f}"
    ratio("  ratio  3 boards / 1 board", three["rps"] / one["rps"], detail)


def boards_label(boards: int) -> str:
    return f"{boards} board{'s' if boards > 1 else ''}"


def line(label: str, run: dict[str, float], items: bool = False) -> None:
    durable = f"  {run['items_per_s']:7.0f} items/s" if items else ""
    print(
        f"{label:{WIDTH}}{run['rps']:9.0f} req/s   p50 {run['p50']:6.2f} ms  "
        f"p99 {run['p99']:6.2f} ms{durable}"
    )


def ratio(label: str, value: float, detail: str = "") -> None:
    print(f"{label:{WIDTH}}{value:9.2f} {detail}".rstrip())


if __name__ == "__main__":
    main()
