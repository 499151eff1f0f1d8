"""`scoreboard serve --workers N` as real processes: the workers share one port and nothing
else but PostgreSQL and Redis, a scrape from any of them adds up all of them, a dead worker
is replaced without losing its counts, and stopping (or killing) the supervisor leaves no
worker behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.helpers import Api, bearer, forge_ticket, make_token, samples, settings_env, value
from tests.live.wsclient import next_event, open_ws
from tests.production.conftest import POINTS, Shape, board_shows
from tests.server import ServerProcess, free_port

ACCEPTED = {"board": "global", "outcome": "accepted"}


def workers_of(supervisor: int) -> list[int]:
    path = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def two_workers(
    shape: Shape, **env: str
) -> tuple[ServerProcess, subprocess.Popen[bytes], list[int]]:
    """`serve --workers 2` started and both workers running: the server, the supervisor's
    process and the workers' pids."""
    server = shape.app("workers", SCOREBOARD_WORKERS="2", **env)
    assert server.process is not None
    supervisor = server.process
    wait_for(lambda: len(workers_of(supervisor.pid)) == 2, "two workers")
    return server, supervisor, workers_of(supervisor.pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def established(pid: int, port: int) -> int:
    """How many TCP connections to ``port`` the process holds (its accepted clients)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


async def serving(url: str, patience: float = 30) -> None:
    """Until the port answers (a worker listens)."""
    deadline = time.monotonic() + patience
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while True:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "no worker answers"
            await asyncio.sleep(0.1)


async def update_many(client: httpx.AsyncClient, users: list[str], each: int) -> None:
    async def one(user: str) -> None:
        body = {"actionId": forge_ticket(user), "timestamp": datetime.now(UTC).isoformat()}
        response = await client.post(
            "/api/scores/update", json=body, headers=bearer(make_token(user))
        )
        assert response.status_code == 200, response.text

    await asyncio.gather(*(one(user) for user in users for _ in range(each)))


async def accepted_in_every_scrape(url: str, expected: float) -> None:
    """Several scrapes (each answered by whichever worker accepts it) all add up to it."""
    for _ in range(6):
        async with httpx.AsyncClient(base_url=url, timeout=10) as fresh:
            response = await fresh.get("/metrics")  # a new connection: any worker
        assert response.status_code == 200, response.text
        found = samples(response.text)
        assert value(found, "scoreboard_score_updates_total", **ACCEPTED) == expected
        assert value(found, "scoreboard_ws_connections") == 1.0  # the watcher, on one worker
        assert value(found, "process_resident_memory_bytes") is None  # one worker's: left out


@pytest.mark.slow
async def test_workers_share_the_port_and_add_up_their_metrics(shape: Shape) -> None:
    server, process, first = two_workers(shape)
    supervisor = process.pid

    watcher = await open_ws(server, make_token("watcher"))
    try:
        await next_event(watcher, "connection_success")
        users = [f"player-{n}" for n in range(8)]
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            await update_many(client, users, 8)
            # The kept-alive connections were accepted by both workers.
            held = {pid: established(pid, server.port) for pid in first}
            assert all(held.values()), held
            await board_shows(watcher, "player-0", 8 * POINTS, wait=10)
            await accepted_in_every_scrape(server.url, 64)

        # A worker that dies (not the watcher's) is replaced; its counts stay in the sum.
        wait_for(lambda: sum(established(pid, server.port) for pid in first) == 1, "one socket")
        victim = next(pid for pid in first if established(pid, server.port) == 0)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: len(workers_of(supervisor)) == 2 and victim not in workers_of(supervisor),
            "a replacement worker",
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            await update_many(client, users, 1)
            await board_shows(watcher, "player-7", 9 * POINTS, wait=10)
            await accepted_in_every_scrape(server.url, 72)
            leaderboard = await Api(client).leaderboard(20)
        assert {entry["userId"]: entry["score"] for entry in leaderboard} == {
            user: 9 * POINTS for user in users
        }
        # The watcher's worker dies: its live gauge goes with it (mark_process_dead).
        now = workers_of(supervisor)
        wait_for(lambda: sum(established(pid, server.port) for pid in now) == 1, "one socket")
        holder = next(pid for pid in now if established(pid, server.port) == 1)
        os.kill(holder, signal.SIGKILL)
        wait_for(lambda: holder not in workers_of(supervisor), "a replacement worker")
        await serving(server.url)  # the replacement may still be starting
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            found = samples((await client.get("/metrics")).text)
        assert value(found, "scoreboard_ws_connections") == 0.0
        assert value(found, "scoreboard_score_updates_total", **ACCEPTED) == 72
    finally:
        await watcher.close()
    assert "worker_died" in server.log_path.read_text()


@pytest.mark.slow
async def test_stopping_the_supervisor_stops_every_worker(shape: Shape) -> None:
    metrics_port = free_port()
    server, supervisor, workers = two_workers(shape, SCOREBOARD_METRICS_PORT=str(metrics_port))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as updates:
        await update_many(updates, ["solo"], 3)
    async with httpx.AsyncClient(timeout=10) as client:
        # The supervisor serves the metrics port for all the workers; the main port does not.
        found = samples((await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        assert value(found, "scoreboard_score_updates_total", **ACCEPTED) == 3
        assert (await client.get(f"{server.url}/metrics")).status_code == 404

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in workers)
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"{server.url}/healthz")


@pytest.mark.slow
def test_a_second_deployment_cannot_take_the_port_of_a_running_one(shape: Shape) -> None:
    """SO_REUSEPORT would let a second supervisor's workers bind beside the first's, and the
    kernel split the connections between two deployments: it must refuse to start."""
    first = shape.app("first", SCOREBOARD_WORKERS="2")
    env = {**os.environ, **shape.env(SCOREBOARD_WORKERS="2"), "SCOREBOARD_PORT": str(first.port)}
    run = subprocess.run(
        [sys.executable, "-m", "scoreboard", "serve", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "in use" in run.stderr
    assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200


@pytest.mark.slow
async def test_a_killed_supervisor_leaves_no_worker_holding_the_port(shape: Shape) -> None:
    _, supervisor, workers = two_workers(shape)
    supervisor.kill()
    supervisor.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to stop", 20)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, "production shape"),
        ({"SCOREBOARD_RATE_LIMIT_STORAGE": "memory://"}, "rate limits every worker shares"),
    ],
)
def test_workers_refuse_what_one_process_must_hold(
    tmp_path: Path, pg_url: str, overrides: dict[str, str], reason: str
) -> None:
    """The embedded shape (SQLite, in-process ranking and limits) and limits kept in each
    process would split what must be one: refused at start-up with the reason."""
    env = settings_env(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    if overrides:
        env = settings_env(pg_url, tmp_path) | {"SCOREBOARD_REDIS_URL": "redis://127.0.0.1:1"}
        env |= overrides
    run = subprocess.run(
        [sys.executable, "-m", "scoreboard", "serve", "--workers", "2", "--port", "1"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert reason in run.stderr
    assert "Traceback" not in run.stderr


def test_a_worker_count_out_of_range_is_a_clear_error(tmp_path: Path) -> None:
    env = settings_env(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "scoreboard", "serve", "--workers", "0"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "--workers" in run.stderr
    assert "Traceback" not in run.stderr
