"""The production shape's fixtures (tests/production/conftest.py), and a real Prometheus of
the test's own, stopped however the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.monitoring.prometheus import PrometheusServer
from tests.monitoring.support import require
from tests.production.conftest import pg_url, redis_server, shape

__all__ = ["pg_url", "redis_server", "shape"]  # the production suite's fixtures, used here too

StartPrometheus = Callable[[list[str]], PrometheusServer]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """Starts ``prometheus`` scraping the given ``host:port`` targets every second with
    deploy/prometheus/alerts.yml loaded unchanged; every one started is killed at the end."""
    binary = require("prometheus")
    started: list[PrometheusServer] = []

    def start(targets: list[str]) -> PrometheusServer:
        directory = tmp_path / f"prometheus-{len(started)}"
        server = PrometheusServer(binary, directory, targets)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()
            if server.log_path.exists():  # shown by pytest when the test failed
                print(f"----- {server.log_path} (last 4000 characters) -----")
                print(server.log_path.read_text(errors="replace")[-4000:])
