from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import settings_env
from tests.server import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The embedded database of this test's servers (and of nothing else)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"


@pytest.fixture
def start_server(tmp_path: Path, sqlite_url: str) -> Iterator[StartServer]:
    """Start real `scoreboard serve` processes with extra settings (``SCOREBOARD_...=``), on
    the embedded SQLite file unless a database URL is given."""
    started: list[ServerProcess] = []

    def start(database_url: str | None = None, **env: str) -> ServerProcess:
        server = ServerProcess(
            settings_env(database_url or sqlite_url, tmp_path, **env),
            tmp_path / f"server-{len(started)}.log",
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
