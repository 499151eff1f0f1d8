"""The monitoring files and what tests read from them: the alert rules, the dashboard's
expressions, the metric names both use, and the promtool and prometheus binaries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml  # PyYAML, a dependency of Litestar

from tests.production.conftest import _missing

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "scoreboard.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
COMPOSE = DEPLOY / "compose.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"
JOB = "scoreboard"  # the scrape job of the instances (ScoreboardInstanceDown matches it)

METRIC = re.compile(r"\bscoreboard_[a-z0-9_]+")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of deploy/prometheus/alerts.yml."""
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panels() -> list[dict[str, Any]]:
    """The dashboard's panels, those inside collapsed rows included (rows themselves not)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries."""
    expressions = [target["expr"] for panel in panels() for target in panel["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            expressions.append(query["query"] if isinstance(query, dict) else query)
    return expressions


def metric_names(expression: str) -> set[str]:
    """The scoreboard series an expression reads, found crudely: as they appear, so
    a histogram is named by its ``_bucket``, ``_count`` or ``_sum`` series."""
    return set(METRIC.findall(expression))


def alert_metric_names() -> set[str]:
    return {name for rule in alert_rules() for name in metric_names(rule["expr"])}


def dashboard_metric_names() -> set[str]:
    return {name for expr in dashboard_expressions() for name in metric_names(expr)}


def require(binary: str) -> str:
    """The path of a binary of Debian's ``prometheus`` package; without it the test fails
    in CI and skips elsewhere."""
    _missing(binary, "prometheus")
    return shutil.which(binary) or f"/usr/sbin/{binary}"


def promtool(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
