"""Score update throughput of the embedded shape, as ratios against floors measured in the
same run on the same machine, with wrk as the load generator (apt-get install wrk):

- hello: a Litestar hello-world POST on uvicorn with the same settings (the framework floor);
- commit: one SQLite INSERT + COMMIT per update with synchronous=FULL on the same disk (the
  best a one-transaction-per-request design could do).

Every score update sent is a distinct valid ticket (pre-signed, not timed), so each one is a
real, durable, exactly-once write. Run: `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis as redis_sync  # noqa: E402
from tests.helpers import forge_ticket, make_token, settings_env  # noqa: E402
from tests.postgres import temporary_database  # noqa: E402
from tests.redis_support import REDIS_URL  # noqa: E402
from tests.server import free_port  # noqa: E402


def write_requests(path: Path, count: int, users: int) -> None:
    tokens = [make_token(f"user-{u}", username=f"Player {u}", ttl=3600) for u in range(users)]
    issued = datetime.now(UTC)  # every ticket opens at the same instant as the timestamp
    stamp = issued.isoformat()
    with path.open("w") as out:
        for i in range(count):
            ticket = forge_ticket(f"user-{i % users}", issued_at=issued)
            out.write(
                f"{tokens[i % users]}\t{json.dumps({'actionId': ticket, 'timestamp': stamp})}\n"
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


def wrk(port: int, requests: Path, seconds: int, connections: int) -> dict[str, float]:
    run = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "replay.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            str(requests),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if run.stderr.strip():  # replay.lua names the first refusal of each status
        print(run.stderr.strip(), file=sys.stderr)
    output = run.stdout

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


def measure_scoreboard(
    database: str, redis_prefix: str | None, work: Path, requests: Path, args: argparse.Namespace
) -> dict[str, float]:
    port = free_port()
    env = settings_env(database, work, SCOREBOARD_PORT=str(port), SCOREBOARD_LOG_LEVEL="warning")
    # Velocity rules off: the benchmark's players are machines on purpose.
    env["SCOREBOARD_ABUSE_RULES"] = json.dumps(
        {"points_per_minute": {"policy": "off"}, "actions_per_minute": {"policy": "off"}}
    )
    if redis_prefix:
        env |= {"SCOREBOARD_REDIS_URL": REDIS_URL, "SCOREBOARD_REDIS_PREFIX": redis_prefix}
    server = serve([sys.executable, "-m", "scoreboard", "serve"], env, port)
    write_requests(requests, args.tickets, args.users)  # fresh timestamps, within the skew
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--tickets", type=int, default=60_000, help="must exceed what one run sends"
    )
    parser.add_argument(
        "--production", action="store_true", help="also PostgreSQL + Redis (local servers)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        requests = work / "requests.tsv"
        write_requests(requests, args.tickets, args.users)

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
        hello_server = serve(hello_cmd, {}, port)
        try:
            hello = wrk(port, requests, args.seconds, args.connections)
        finally:
            hello_server.terminate()
            hello_server.wait()

        updates = measure_scoreboard(
            f"sqlite+aiosqlite:///{work}/bench.db", None, work, requests, args
        )
        production = None
        if args.production:
            with temporary_database() as database:
                prefix = f"bench:{os.getpid()}:"
                production = measure_scoreboard(database, prefix, work, requests, args)
                redis_sync.Redis.from_url(REDIS_URL).eval(
                    "for _,k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end",
                    0,
                    prefix + "*",
                )
        commits = commit_floor(work, 3000)

    if updates["requests"] > args.tickets or updates["errors"]:
        print(f"warning: {updates['errors']:.0f} non-2xx responses (raise --tickets?)")
    print(
        f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.users} users, {os.cpu_count()} cpus"
    )
    line("floor  hello-world POST", hello)
    print(f"{'floor  SQLite commit per update':34}{commits:9.0f} commits/s (synchronous=FULL)")
    line("score updates, embedded SQLite", updates)
    print(f"{'ratio  updates / hello-world':34}{updates['rps'] / hello['rps']:9.2f}")
    if production:
        line("score updates, PostgreSQL + Redis", production)
        print(f"{'ratio  production / embedded':34}{production['rps'] / updates['rps']:9.2f}")
    print(f"{'ratio  updates / commit floor':34}{updates['rps'] / commits:9.2f}")


def line(label: str, run: dict[str, float]) -> None:
    print(f"{label:34}{run['rps']:9.0f} req/s   p50 {run['p50']:6.2f} ms  p99 {run['p99']:6.2f} ms")


if __name__ == "__main__":
    main()
