"""What constant score updates leave behind in ``user_scores``: dead rows, HOT updates and the
table's size, with PostgreSQL's default storage parameters (the floor) and with the ones
migration 0004 sets, side by side in one run on one PostgreSQL cluster.

The cluster is a private one (``initdb`` into a temporary directory, a free port, stopped
afterwards) with autovacuum on and ``autovacuum_naptime`` = ``--naptime`` seconds, so that a
short run sees several autovacuum rounds (production's default is 60 s; the ratios hold).
Both tables get the same stream of updates from the writer's own upsert: ``--users`` users,
batches of ``--batch`` rows (one group commit each) for ``--seconds`` seconds.
Run: `.venv/bin/python bench/table_churn.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

import asyncpg

ROOT = Path(__file__).resolve().parent.parent


def _migration() -> ModuleType:
    """Migration 0004, whose storage parameters are measured (its file name is no module)."""
    path = ROOT / "src/scoreboard/migrations/versions/0004_cache_check.py"
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


storage = _migration()

TABLE = """
CREATE TABLE {name} (
    board_id varchar(64), period_key varchar(64), user_id varchar(36),
    username varchar(255) NOT NULL, score bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0, last_updated timestamptz NOT NULL,
    value_at timestamptz, PRIMARY KEY (board_id, period_key, user_id));
CREATE INDEX {name}_ranking ON {name} (board_id, period_key, score DESC, last_updated, user_id);
"""
UPSERT = """
INSERT INTO {name} (board_id, period_key, user_id, username, score, version, last_updated)
SELECT 'global', 'all', u, 'name-' || u, 10, 1, now() FROM unnest($1::text[]) AS u
ON CONFLICT (board_id, period_key, user_id) DO UPDATE SET
  username = excluded.username, score = {name}.score + excluded.score,
  version = {name}.version + excluded.version, last_updated = excluded.last_updated
"""
STATS = """
SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,
       pg_total_relation_size(relid) AS size
FROM pg_stat_user_tables WHERE relname = $1
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise SystemExit(f"{name} not found: install PostgreSQL's server package")


def as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Cluster:
    def __init__(self, naptime: int) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="churn-"))
        self.port = free_port()
        self.naptime = naptime

    def __enter__(self) -> Cluster:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        data = str(self.directory / "data")
        subprocess.run(
            as_postgres([binary("initdb"), "-D", data, "-U", "postgres", "--auth=trust"]),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            as_postgres(
                [
                    binary("pg_ctl"),
                    "-D",
                    data,
                    "-l",
                    str(self.directory / "log"),
                    "-w",
                    "-o",
                    f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                    f"-c autovacuum=on -c autovacuum_naptime={self.naptime} -c fsync=off",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return self

    def __exit__(self, *_: object) -> None:
        subprocess.run(
            as_postgres(
                [binary("pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "stop"]
            ),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


async def churn(
    url: str, users: int, batch: int, seconds: float, rate: float
) -> dict[str, dict[str, int]]:
    conn = await asyncpg.connect(url)
    try:
        settings = ", ".join(f"{k} = {v}" for k, v in storage.USER_SCORES_STORAGE.items())
        for name in ("floor", "tuned"):
            await conn.execute(TABLE.format(name=name))
        await conn.execute(f"ALTER TABLE tuned SET ({settings})")
        ids = [f"user-{i:06d}" for i in range(users)]
        for name in ("floor", "tuned"):
            for start in range(0, users, 1000):
                await conn.execute(UPSERT.format(name=name), ids[start : start + 1000])
        rng = random.Random(1)
        worst = {"floor": 0, "tuned": 0}
        began = time.monotonic()
        deadline, rows = began + seconds, 0
        while time.monotonic() < deadline:
            ahead = began + rows / rate - time.monotonic()
            if ahead > 0:  # paced: ``rate`` rows a second into each table
                await asyncio.sleep(ahead)
            picked = sorted(rng.sample(ids, batch))  # key order, as the writer locks them
            for name in ("floor", "tuned"):
                async with conn.transaction():
                    await conn.execute(UPSERT.format(name=name), picked)
            rows += batch
            if rows % (batch * 50) == 0:
                await conn.execute("SELECT pg_stat_force_next_flush()")
                for name in worst:
                    dead = await conn.fetchval(
                        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = $1", name
                    )
                    worst[name] = max(worst[name], int(dead or 0))
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(1)
        result = {}
        for name in ("floor", "tuned"):
            row = await conn.fetchrow(STATS, name)
            result[name] = {**dict(row), "worst_dead": worst[name], "updates": rows}
        return result
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--naptime", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1_000, help="updated rows per second")
    arguments = parser.parse_args()
    with Cluster(arguments.naptime) as cluster:
        figures = asyncio.run(
            churn(cluster.url, arguments.users, arguments.batch, arguments.seconds, arguments.rate)
        )
    floor, tuned = figures["floor"], figures["tuned"]
    print(
        f"{floor['updates']:,} updates over {arguments.users:,} users in each table, "
        f"autovacuum on, naptime {arguments.naptime} s"
    )
    print(f"{'':28}{'default (floor)':>16}{'migration 0004':>16}{'ratio':>8}")
    for label, key in (
        ("dead rows at the end", "n_dead_tup"),
        ("dead rows, worst seen", "worst_dead"),
        ("autovacuum runs", "autovacuum_count"),
        ("HOT updates", "n_tup_hot_upd"),
        ("table + indexes, bytes", "size"),
    ):
        ratio = tuned[key] / floor[key] if floor[key] else float("nan")
        print(f"{label:28}{floor[key]:>16,}{tuned[key]:>16,}{ratio:>7.2f}x")
    hot = {name: f["n_tup_hot_upd"] / max(1, f["n_tup_upd"]) for name, f in figures.items()}
    print(f"{'HOT ratio':28}{hot['floor']:>16.1%}{hot['tuned']:>16.1%}")


if __name__ == "__main__":
    main()
