from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import settings_env
from tests.server import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start real `scoreboard serve` processes (embedded SQLite) with extra settings."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        database = f"sqlite+aiosqlite:///{tmp_path / 'scoreboard.db'}"
        server = ServerProcess(
            settings_env(database, tmp_path, **env), tmp_path / f"server-{len(started)}.log"
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
