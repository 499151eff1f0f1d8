"""Every benchmark at a tiny size (seconds), so none of them rots: ``make bench-smoke``, part of
``make test``. The figures mean nothing at this size; a benchmark that fails fails the run.

What a benchmark needs and the machine lacks (wrk; the PostgreSQL and Redis of the test suite,
``SCOREBOARD_TEST_POSTGRES_URL`` and ``SCOREBOARD_TEST_REDIS_URL``) skips it with the reason,
as the tests do; with ``CI`` set (1/true/yes) a missing need fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get(
    "SCOREBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SCOREBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        address = (parts.hostname or "127.0.0.1", parts.port or default_port)
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def missing(needs: list[str]) -> list[str]:
    lacking = []
    if "wrk" in needs and shutil.which("wrk") is None:
        lacking.append("wrk (apt-get install wrk)")
    if "postgres" in needs and not reachable(POSTGRES_URL, 5432):
        lacking.append(f"PostgreSQL at {POSTGRES_URL} (SCOREBOARD_TEST_POSTGRES_URL)")
    if "redis" in needs and not reachable(REDIS_URL, 6379):
        lacking.append(f"Redis at {REDIS_URL} (SCOREBOARD_TEST_REDIS_URL)")
    return lacking


def database_url() -> str:
    return "postgresql+asyncpg://" + POSTGRES_URL.split("://", 1)[1]


BENCHES: list[tuple[list[str], list[str]]] = [
    (
        [
            "score_updates.py",
            "--production",
            "--seconds",
            "1",
            "--tickets",
            "4000",
            "--boards=1",
            "--workers",
            "2",
        ],
        ["wrk", "postgres", "redis"],
    ),
    (
        ["leaderboard_reads.py", "--production", "--seconds", "1", "--players", "12"],
        ["wrk", "postgres", "redis"],
    ),
    (
        [
            "live_fanout.py",
            "--connections",
            "20",
            "--sample",
            "5",
            "--updates",
            "3",
            "--interval",
            "0.1",
        ],
        [],
    ),
    (
        ["rebuild_cache.py", "--users", "2000", "--redis-url", REDIS_URL],
        ["postgres", "redis"],
    ),
]


def main() -> int:
    failed = []
    for arguments, needs in BENCHES:
        if lacking := missing(needs):
            message = f"bench/{arguments[0]}: needs {', '.join(lacking)}"
            if IN_CI:
                print(f"FAILED {message}", file=sys.stderr)
                failed.append(arguments[0])
            else:
                print(f"skipped {message}")
            continue
        if arguments[0] == "rebuild_cache.py":
            arguments = [*arguments, "--database-url", database_url()]
        print(f"== bench/{' '.join(arguments)}", flush=True)
        run = subprocess.run([sys.executable, str(ROOT / "bench" / arguments[0]), *arguments[1:]])
        if run.returncode:
            failed.append(arguments[0])
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
