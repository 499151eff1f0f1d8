"""deploy/grafana/scoreboard.json is a well-formed dashboard whose every query a real
Prometheus accepts, provisioned by deploy/grafana/provisioning, and deploy/compose.yaml runs
Prometheus, Alertmanager and Grafana with the files mounted where each expects them."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import httpx
import pytest

from tests.monitoring.conftest import StartPrometheus
from tests.monitoring.support import (
    COMPOSE,
    DEPLOY,
    JOB,
    PROMETHEUS_CONFIG,
    PROVISIONING,
    dashboard,
    load_yaml,
    panels,
)

# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$instance": ".*",
    "$board": ".*",
}


def grafana_expanded(expression: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"an unknown variable in {expression}"
    return expression


def services() -> dict[str, Any]:
    found: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return found


def mounts(service: str) -> dict[str, str]:
    """A service's bind mounts: where in the container -> which file of deploy/."""
    found: dict[str, str] = {}
    for volume in services()[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            found[target] = source
    return found


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "scoreboard"
    assert board["title"]
    every = board["panels"]
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["title"], panel["id"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({target["refId"] for target in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_grafana_provisions_the_prometheus_data_source_and_the_dashboard() -> None:
    sources = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    (source,) = sources
    assert source["type"] == "prometheus"
    default = dashboard()["templating"]["list"][0]
    assert default["name"] == "datasource"
    assert source["uid"] == default["current"]["value"], "the dashboard's default data source"
    prometheus_port = services()["prometheus"]["ports"][0].rsplit(":", 1)[-1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"

    (provider,) = load_yaml(PROVISIONING / "dashboards" / "scoreboard.yml")["providers"]
    grafana = mounts("grafana")
    dashboards = [target for target, source in grafana.items() if source.endswith(".json")]
    assert dashboards == [f"{provider['options']['path']}/scoreboard.json"]
    assert grafana["/etc/grafana/provisioning/datasources"] == "./grafana/provisioning/datasources"
    assert grafana["/etc/grafana/provisioning/dashboards"] == "./grafana/provisioning/dashboards"


def test_compose_mounts_the_monitoring_files_that_exist() -> None:
    for service in ("prometheus", "alertmanager", "grafana"):
        assert mounts(service), service
        for source in mounts(service).values():
            assert (DEPLOY / source).exists(), (service, source)
    prometheus = mounts("prometheus")
    config = next(
        target for target, source in prometheus.items() if source.endswith("/prometheus.yml")
    )
    alerts = next(target for target, source in prometheus.items() if source.endswith("/alerts.yml"))
    rule_file = load_yaml(PROMETHEUS_CONFIG)["rule_files"][0]
    assert str(PurePosixPath(config).parent / rule_file) == alerts
    assert f"--config.file={config}" in services()["prometheus"]["command"]
    alertmanager = mounts("alertmanager")
    config = next(target for target, source in alertmanager.items() if source.endswith(".yml"))
    assert f"--config.file={config}" in services()["alertmanager"]["command"]


def test_prometheus_scrapes_every_app_instance_on_its_metrics_port() -> None:
    every = services()
    upstreams = [
        value for name, value in every["nginx"]["environment"].items() if name.startswith("APP_")
    ]
    instances = [upstream.split(":")[0] for upstream in upstreams]
    assert len(instances) >= 2
    ports = {every[instance]["environment"]["SCOREBOARD_METRICS_PORT"] for instance in instances}
    (port,) = ports
    (job,) = [
        job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if job["job_name"] == JOB
    ]
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert sorted(targets) == sorted(f"{instance}:{port}" for instance in instances)
    alerting = load_yaml(PROMETHEUS_CONFIG)["alerting"]["alertmanagers"][0]["static_configs"]
    alertmanager_port = every["alertmanager"]["ports"][0].rsplit(":", 1)[-1]
    assert alerting[0]["targets"] == [f"alertmanager:{alertmanager_port}"]


@pytest.mark.slow
async def test_a_real_prometheus_accepts_every_dashboard_query(
    prometheus: StartPrometheus,
) -> None:
    server = prometheus([])
    expressions = [target["expr"] for panel in panels() for target in panel["targets"]]
    async with httpx.AsyncClient() as client:
        for expression in expressions:
            response = await client.get(
                f"{server.url}/api/v1/query", params={"query": grafana_expanded(expression)}
            )
            assert response.status_code == 200, (expression, response.text)
