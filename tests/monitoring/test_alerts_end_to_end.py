"""End to end: a real Prometheus scrapes a real service process of the production shape every
second with deploy/prometheus/alerts.yml loaded; a burst of replayed tickets makes
ScoreboardReplaySpike fire, seen through Prometheus's HTTP API."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import Api, new_user, problem, real_client
from tests.monitoring.conftest import StartPrometheus
from tests.monitoring.prometheus import PrometheusServer
from tests.monitoring.support import JOB, alert_rules
from tests.production.conftest import Shape

ALERT = "ScoreboardReplaySpike"
REPLAYS = 40  # the alert's threshold is 20 in 2 minutes
FIRING_WITHIN = 90.0  # seconds; the alert waits 30 s (`for:`) once past the threshold


async def _until(
    probe: Any, what: str, seconds: float, prometheus: PrometheusServer
) -> dict[str, Any]:
    """Poll ``probe`` (an async callable returning a value or None) until it returns one."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            found: dict[str, Any] = last
            return found
        await asyncio.sleep(0.5)
    log = prometheus.log_path.read_text(errors="replace")[-3000:]
    raise AssertionError(f"{what}: not within {seconds} s\nprometheus log:\n{log}")


@pytest.mark.slow
async def test_a_burst_of_replays_fires_the_replay_alert_in_a_real_prometheus(
    shape: Shape, prometheus: StartPrometheus
) -> None:
    app = shape.app("app")
    server = prometheus([urlsplit(app.url).netloc])
    async with real_client(app) as client, httpx.AsyncClient() as http:

        async def query(expr: str) -> list[dict[str, Any]]:
            data = await server.api(http, "query", query=expr)
            result: list[dict[str, Any]] = data["result"]
            return result

        async def scraped() -> list[dict[str, Any]]:
            return [r for r in await query(f'up{{job="{JOB}"}}') if r["value"][1] == "1"]

        await _until(scraped, "the instance scraped", 30, server)

        # A ticket completed, then sent again: the first replay makes the series exist (if
        # it was not already there at 0), so that the burst after it is an increase.
        api, user = Api(client), new_user()
        ticket = await api.issue(user)
        first = await api.complete(user, ticket)
        assert first.status_code == 200, first.text
        problem(await api.complete(user, ticket), 409, "action_already_used")
        replays = 'scoreboard_score_updates_total{outcome="action_already_used"}'

        async def seen() -> list[dict[str, Any]]:
            return await query(replays)

        await _until(seen, "the first replay scraped", 30, server)
        for _ in range(REPLAYS - 1):
            problem(await api.complete(user, ticket), 409, "action_already_used")

        async def firing() -> dict[str, Any] | None:
            alerts: list[dict[str, Any]] = (await server.api(http, "alerts"))["alerts"]
            return next(
                (
                    alert
                    for alert in alerts
                    if alert["labels"]["alertname"] == ALERT and alert["state"] == "firing"
                ),
                None,
            )

        began = time.monotonic()
        alert = await _until(firing, f"{ALERT} firing", FIRING_WITHIN, server)
        print(f"{ALERT} fired {time.monotonic() - began:.1f} s after the burst")
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["category"] == "security"
        assert float(alert["value"]) > 20
        assert "ticket_replay" in alert["annotations"]["runbook"]

        # Only it: the other rules, evaluated on the same live data, stay quiet and healthy.
        alerts = (await server.api(http, "alerts"))["alerts"]
        assert {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"} == {ALERT}
        groups = (await server.api(http, "rules", type="alert"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == len(alert_rules())
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
