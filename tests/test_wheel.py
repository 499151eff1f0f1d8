"""What users install: the wheel built from this repository, installed with pip into a fresh
virtualenv and started from an unrelated directory. An editable checkout would hide a file
missing from the package; this cannot."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.postgres import temporary_database
from tests.production.conftest import plain_url
from tests.server import ServerProcess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = [
    "scoreboard/py.typed",
    "scoreboard/web/static/index.html",
    "scoreboard/web/static/page.js",
    "scoreboard/web/static/scoreboard-client.js",
    "scoreboard/web/static/scoreboard-client.d.ts",
    "scoreboard/web/static/style.css",
    *(
        f"scoreboard/web/static/docs/{name}"
        for name in (
            "docs.js",
            "swagger-ui-bundle.js",
            "swagger-ui.css",
            "LICENSE",
            "NOTICE",
            "swagger-ui-bundle.js.LICENSE.txt",
        )
    ),
    "scoreboard/live/asyncapi.json",
    "scoreboard/actions/default_actions.toml",
    "scoreboard/migrations/script.py.mako",
    "scoreboard/migrations/env.py",
    *(
        f"scoreboard/migrations/versions/{p.name}"
        for p in (ROOT / "src/scoreboard/migrations/versions").glob("0*.py")
    ),
]


async def _schema_of(url: str) -> tuple[str, set[str]]:
    conn = await asyncpg.connect(plain_url(url), timeout=5)
    try:
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
    return str(version), tables


def _run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """The built wheel's file list, a fresh virtualenv with it installed, and what building
    and installing printed."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", work / "dist", ROOT])
    (wheel,) = (work / "dist").glob("scoreboard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    install = _run([environment / "bin/python", "-m", "pip", "install", "-q", wheel])
    return environment, names, built.stdout + built.stderr + install.stdout + install.stderr


def test_the_wheel_holds_everything_the_service_reads(
    installed: tuple[Path, list[str], str],
) -> None:
    _, names, output = installed
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert missing == []
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]
    # No setuptools deprecation banner while building or installing.
    assert not re.search(r"DeprecationWarning|BuildBackendWarning|is deprecated", output), output


def test_the_installed_service_serves_its_page_and_catalog_from_another_directory(
    installed: tuple[Path, list[str], str], tmp_path: Path
) -> None:
    environment, _, _ = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "SCOREBOARD_ENV": "dev",
        "SCOREBOARD_DATA_DIR": str(elsewhere / "data"),
        "SCOREBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{elsewhere / 'scores.db'}",
        "PATH": f"{environment / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    server = ServerProcess(
        env,
        tmp_path / "serve.log",
        command=[str(environment / "bin/scoreboard"), "serve"],
        cwd=elsewhere,
    )
    server.start(timeout=60)
    try:
        with httpx.Client(base_url=server.url, timeout=15) as client:
            page = client.get("/")
            assert page.status_code == 200, page.text
            assert "text/html" in page.headers["content-type"]
            for script in ("page.js", "scoreboard-client.js"):
                response = client.get(f"/static/{script}")
                assert response.status_code == 200, script
                assert "javascript" in response.headers["content-type"]
            assert client.get("/schema/asyncapi.json").json()["asyncapi"].startswith("3.")
            assert "swagger-ui" in client.get("/schema").text  # the docs page, in dev
            for asset in ("docs.js", "swagger-ui-bundle.js", "swagger-ui.css"):
                assert client.get(f"/static/docs/{asset}").status_code == 200, asset
            token = client.get("/dev/token", params={"user": "viewer"}).json()["token"]
            boards = client.get("/api/boards", headers={"Authorization": f"Bearer {token}"})
            assert boards.status_code == 200, boards.text
            assert {b["id"] for b in boards.json()["boards"]} == {"global", "weekly", "daily"}
    finally:
        server.stop()


def test_the_installed_migrate_command_builds_a_fresh_postgres_database(
    installed: tuple[Path, list[str], str], tmp_path: Path
) -> None:
    environment, _, _ = installed
    with temporary_database(migrated=False) as url:
        _run(
            [environment / "bin/scoreboard", "migrate"],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "SCOREBOARD_DATABASE_URL": url},
        )
        version, tables = asyncio.run(_schema_of(url))
    heads = sorted(p.name[:4] for p in (ROOT / "src/scoreboard/migrations/versions").glob("0*.py"))
    assert version == heads[-1]
    assert {"user_scores", "score_updates", "boards", "admin_audit"} <= tables
