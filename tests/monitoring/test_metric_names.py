"""Every metric named in deploy/prometheus/alerts.yml and in the Grafana dashboard exists: in
src/scoreboard/metrics.py, and as series in a live scrape of a real service process of the
production shape (PostgreSQL + Redis) after some traffic of every kind they count."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scoreboard.metrics import Metrics
from tests.helpers import Api, bearer, forge_ticket, new_user, problem, real_client
from tests.live.wsclient import closed_with, next_event, open_ws
from tests.monitoring.support import (
    alert_metric_names,
    dashboard_metric_names,
    metric_names,
)
from tests.production.conftest import Shape
from tests.server import ServerProcess, free_port

SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def defined_series() -> set[str]:
    """Every series name the service's metrics can have, children or not."""
    names: set[str] = set()
    for family in Metrics("production").registry.collect():
        names |= {family.name + suffix for suffix in SERIES_SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def scraped_series(text: str) -> set[str]:
    """The series names that have at least one sample in a scrape."""
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("scoreboard_")
    }


def test_the_expressions_are_read_for_metric_names() -> None:
    assert metric_names(
        'sum(rate(scoreboard_a_total{x="scoreboard"}[5m])) / scoreboard_b_bucket'
    ) == {"scoreboard_a_total", "scoreboard_b_bucket"}
    assert len(alert_metric_names()) >= 10
    assert len(dashboard_metric_names()) >= 20


def test_every_metric_the_alerts_and_the_dashboard_use_is_defined() -> None:
    defined = defined_series()
    assert alert_metric_names() - defined == set(), "alerts.yml names unknown metrics"
    assert dashboard_metric_names() - defined == set(), "the dashboard names unknown metrics"


def test_the_dashboard_shows_what_operators_look_at() -> None:
    shown = dashboard_metric_names()
    for name in (
        "scoreboard_score_updates_total",
        "scoreboard_http_request_duration_seconds_bucket",
        "scoreboard_update_stage_seconds_bucket",
        "scoreboard_write_batch_size_bucket",
        "scoreboard_write_queue_depth",
        "scoreboard_ws_connections",
        "scoreboard_ws_connects_total",
        "scoreboard_ws_closes_total",
        "scoreboard_broadcast_duration_seconds_bucket",
        "scoreboard_broadcast_frames_total",
        "scoreboard_cache_reads_total",
        "scoreboard_cache_drift_total",
        "scoreboard_cache_rebuilds_total",
        "scoreboard_abuse_flags_total",
        "scoreboard_rate_limited_total",
    ):
        assert name in shown, name


async def _traffic(server: ServerProcess) -> None:
    """One of everything the alerts and the dashboard count: accepted updates, replays (past
    the ticket_replay rule's limit: a flag), a forged and a stolen ticket, a broken token, a
    leaderboard read (a cache hit), a WebSocket opened and closed, and one refused by the
    connection rate limit."""
    async with real_client(server) as client:
        api, user, other = Api(client), new_user(), new_user()
        await api.score(user)
        ticket = await api.issue(user)
        assert (await api.complete(user, ticket)).status_code == 200
        for _ in range(4):
            problem(await api.complete(user, ticket), 409, "action_already_used")
        forged = forge_ticket(user, action_secret="not-the-service-secret-" + "x" * 20)
        problem(await api.complete(user, forged), 422, "invalid_action")
        problem(await api.complete(other, await api.issue(user)), 403, "action_not_owned")
        response = await client.get("/api/leaderboard", headers=bearer("not.a.token"))
        problem(response, 401, "invalid_token")
        await api.leaderboard()

        ws = await open_ws(server, api.token(user))
        await next_event(ws, "connection_success")
        await api.score(user)  # a frame fanned out to it
        await ws.close()
        refused = await open_ws(server, api.token(user))
        code, _ = await closed_with(refused)
        assert code == 4429  # SCOREBOARD_RATE_LIMIT_WS_CONNECT: 1/minute


@pytest.mark.slow
async def test_every_metric_the_alerts_and_the_dashboard_use_is_in_a_live_scrape(
    shape: Shape,
) -> None:
    server = shape.app(
        "app",
        SCOREBOARD_RATE_LIMIT_WS_CONNECT="1/minute",
        # Nothing listens there: the deliveries fail, and the webhook's counters show.
        SCOREBOARD_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hooks/moderation",
    )
    wanted = alert_metric_names() | dashboard_metric_names()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        # Before any traffic every metric the alerts read has a series already (at 0, or the
        # start-up's own /healthz probes): the alerts see the first events after a start.
        response = await client.get("/metrics")
        assert alert_metric_names() - scraped_series(response.text) == set()

        await _traffic(server)
        missing = wanted
        deadline = time.monotonic() + 15  # a close or a broadcast may still be on its way
        while missing and time.monotonic() < deadline:
            response = await client.get("/metrics")
            assert response.status_code == 200, response.text
            missing = wanted - scraped_series(response.text)
            if missing:
                await asyncio.sleep(0.5)
    assert missing == set(), "named by alerts.yml or the dashboard, never in a scrape"
