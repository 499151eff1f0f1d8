"""The `scoreboard` command: token, migrate, and refusing unsafe or stale set-ups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.helpers import JWT_SECRET, problem
from tests.redis_support import sync_client


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    return subprocess.run(
        [sys.executable, "-m", "scoreboard", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    env = {"SCOREBOARD_JWT_SECRET": JWT_SECRET}
    result = run(
        "token",
        "alice",
        "--username",
        "Alice",
        "--scope",
        "scores:write",
        "--ttl",
        "60",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["preferred_username"] == "Alice"
    assert claims["scope"] == "scores:write"
    assert claims["exp"] - claims["iat"] == 60


def test_dev_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = run("token", "alice", env={}, cwd=tmp_path)
    second = run("token", "bob", env={}, cwd=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    secrets_file = tmp_path / "scoreboard-data" / "dev-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert jwt.get_unverified_header(first.stdout.strip())["alg"] == "HS256"
    import json

    secret = json.loads(secrets_file.read_text())["jwt_secret"]
    for result, user in ((first, "alice"), (second, "bob")):
        claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
        assert claims["sub"] == user
        assert claims["scope"] == "leaderboard:read scores:write"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {
                "SCOREBOARD_ENV": "production",
                "SCOREBOARD_JWT_SECRET": "short",
                "SCOREBOARD_ACTION_SECRET": "x" * 40,
            },
            "at least 32 bytes",
        ),
        ({"SCOREBOARD_ENV": "production", "SCOREBOARD_ACTION_SECRET": "x" * 40}, "no token key"),
        (
            {"SCOREBOARD_ENV": "production", "SCOREBOARD_JWT_SECRET": "y" * 40},
            "SCOREBOARD_ACTION_SECRET must be set",
        ),
        ({"SCOREBOARD_DATABASE_URL": "mysql://localhost/db"}, "postgresql+asyncpg://"),
        ({"SCOREBOARD_JWT_SECRET": "y" * 40, "SCOREBOARD_JWT_PUBLIC_KEY": "k"}, "only one of"),
    ],
)
def test_unsafe_or_wrong_settings_refuse_to_start(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run("serve", "--port", "1", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_brings_a_fresh_postgres_database_up_to_date(tmp_path: Path) -> None:
    from tests.postgres import temporary_database

    with temporary_database(migrated=False) as url:
        env = {"SCOREBOARD_DATABASE_URL": url, "SCOREBOARD_AUTO_MIGRATE": "false"}
        stale = run("serve", "--port", "1", env=env, cwd=tmp_path)
        assert stale.returncode != 0
        assert "scoreboard migrate" in stale.stderr
        migrated = run("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert "up to date" in migrated.stderr
        again = run("migrate", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr


def test_module_entry_point_shows_help(tmp_path: Path) -> None:
    result = run("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "migrate", "token"):
        assert command in result.stdout


def test_demo_players_move_the_board(tmp_path: Path) -> None:
    from tests.helpers import bearer, make_token
    from tests.server import free_port

    port = free_port()
    env = {**os.environ, "SCOREBOARD_JWT_SECRET": JWT_SECRET}
    env = {
        k: v
        for k, v in env.items()
        if not k.startswith("SCOREBOARD_") or k == "SCOREBOARD_JWT_SECRET"
    }
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scoreboard",
            "demo",
            "--players",
            "6",
            "--rate",
            "30",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        entries: list[object] = []
        while time.monotonic() < deadline and len(entries) < 3:
            time.sleep(0.5)
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/leaderboard",
                    headers=bearer(make_token("watcher")),
                )
                entries = response.json()["leaderboard"]
            except httpx.TransportError:
                continue
        assert len(entries) >= 3, "simulated players did not score"
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/?user=demo-" in output


async def test_dev_token_exists_only_with_the_generated_dev_secret(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from scoreboard.app import create_app
    from tests.helpers import make_settings

    database = f"sqlite+aiosqlite:///{tmp_path / 'db'}"
    generated = make_settings(database, tmp_path, jwt_secret=None)
    async with AsyncTestClient(app=create_app(generated)) as client:
        response = await client.get("/dev/token", params={"user": "alice"})
        assert response.status_code == 200
        token = response.json()["token"]
        me = await client.get("/api/leaderboard/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["userId"] == "alice"
        write = await client.post("/api/actions", headers={"Authorization": f"Bearer {token}"})
        refused = problem(write, 403, "insufficient_scope")  # read-only
        assert refused["requiredScope"] == "scores:write"
    configured = make_settings(database, tmp_path)
    async with AsyncTestClient(app=create_app(configured)) as client:
        problem(await client.get("/dev/token", params={"user": "alice"}), 404, "not_found")
    production = make_settings(database, tmp_path, env="production")
    async with AsyncTestClient(app=create_app(production)) as client:
        problem(await client.get("/dev/token", params={"user": "alice"}), 404, "not_found")


def test_rebuild_cache_loads_redis_from_the_database(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    import asyncio

    from scoreboard.database import create_engine, migrate
    from scoreboard.scores.models import ScoreChange
    from scoreboard.scores.repository import ScoreRepository
    from tests.helpers import board_registry, now_iso

    database = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"

    async def seed() -> None:
        engine = create_engine(database)
        await migrate(engine)
        repository = ScoreRepository(engine, await board_registry(engine, None))
        await repository.start()
        from datetime import datetime

        for i, user in enumerate(["ann", "ben", "cat"]):
            at = datetime.fromisoformat(now_iso())
            change = ScoreChange(user, user, f"seed-{i}", "t", (i + 1) * 10, at, None, ("global",))
            await repository.record(change)
        await repository.stop()
        await engine.dispose()

    asyncio.run(seed())
    env = {
        "SCOREBOARD_DATABASE_URL": database,
        "SCOREBOARD_REDIS_URL": redis_url,
        "SCOREBOARD_REDIS_PREFIX": redis_prefix,
    }
    result = run("rebuild-cache", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cache rebuilt: global/all: 3 users" in result.stderr
    client = sync_client(redis_url)
    try:
        board: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
            f"{redis_prefix}board:{{global/all}}:leaderboard", 0, -1, withscores=True
        )
    finally:
        client.close()
    assert [(member.decode(), int(score)) for member, score in board] == [
        ("ann", 10),
        ("ben", 20),
        ("cat", 30),
    ]
    no_redis = run("rebuild-cache", env={"SCOREBOARD_DATABASE_URL": database}, cwd=tmp_path)
    assert no_redis.returncode == 2
    assert "SCOREBOARD_REDIS_URL is not set" in no_redis.stderr


@pytest.mark.parametrize(
    ("age", "message"),
    [
        ("8d", "at least 9d"),
        ("200h", "at least 9d"),
        ("400", "such as 400d or 240h"),
        ("400 days", "such as 400d or 240h"),
        ("-400d", "such as 400d or 240h"),
        ("99999999d", "such as 400d or 240h"),
        ("36501d", "at most 36500d"),
    ],
)
def test_prune_refuses_an_audit_age_it_cannot_honour(
    tmp_path: Path, age: str, message: str
) -> None:
    """Too short an age would let a live ticket's audit row go (and its replay score): refused
    before anything is opened, with a clear message and no traceback."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'untouched.db'}"
    result = run(
        "prune", "--audit-older-than", age, env={"SCOREBOARD_DATABASE_URL": database}, cwd=tmp_path
    )
    assert result.returncode == 2
    said = " ".join(result.stderr.replace("│", " ").split())  # unwrapped from its box
    assert "Invalid value for '--audit-older-than': " in said
    assert message in said
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "untouched.db").exists()


def test_prune_deletes_old_audit_rows_on_sqlite(tmp_path: Path) -> None:
    """SQLite has no partitions: the rows issued before the cutoff are deleted (in chunks)."""
    import asyncio
    import uuid
    from datetime import UTC, datetime, timedelta

    from scoreboard.database import create_engine, migrate
    from scoreboard.tables import score_updates

    database = f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"
    now = datetime.now(UTC)

    async def audit(*ages: int) -> list[str]:
        engine = create_engine(database)
        try:
            await migrate(engine)
            async with engine.begin() as conn:
                for days in ages:
                    at = now - timedelta(days=days)
                    await conn.execute(
                        score_updates.insert().values(
                            id=str(uuid.uuid4()),
                            user_id="ann",
                            action_id=f"{days}-days",
                            action_type="instant",
                            score_change=10,
                            boards='{"global":"all"}',
                            timestamp=at,
                            recorded_at=at,
                            issued_at=at,
                        )
                    )
            async with engine.connect() as conn:
                query = score_updates.select().with_only_columns(score_updates.c.action_id)
                return sorted((await conn.execute(query)).scalars())
        finally:
            await engine.dispose()

    asyncio.run(audit(800, 401, 399, 0))
    result = run(
        "prune",
        "--audit-older-than",
        "400d",
        env={"SCOREBOARD_DATABASE_URL": database},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "deleted 2 rows" in result.stderr
    assert "pruned 0 periods" in result.stderr
    assert asyncio.run(audit()) == ["0-days", "399-days"]
