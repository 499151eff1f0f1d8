"""deploy/prometheus/alerts.yml and prometheus.yml pass promtool's checks, every alert is unit
tested (tests/monitoring/alerts_test.yml: firing and quiet), carries what on-call needs, and
deploy/alertmanager/alertmanager.yml sends it to the right webhook."""

from __future__ import annotations

import re
from typing import Any

from scoreboard.errors import ScoreboardError
from tests.monitoring.support import (
    ALERTMANAGER_CONFIG,
    ALERTS,
    JOB,
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    alert_rules,
    load_yaml,
    promtool,
)

SEVERITIES = {"critical", "warning"}
CATEGORIES = {"operations": "on-call", "security": "moderation"}  # and their receivers
DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
RANGE = re.compile(r"\[(\w+)(?::\w*)?\]")
MATCHER = re.compile(r'^\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')


def seconds(duration: str) -> float:
    """A Prometheus duration (``30s``, ``1h30m``) in seconds."""
    parts = DURATION.findall(duration)
    assert parts, duration
    assert "".join(f"{n}{unit}" for n, unit in parts) == duration, duration
    return sum(int(n) * UNIT_SECONDS[unit] for n, unit in parts)


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alert_rules()]


# --- promtool --------------------------------------------------------------------------------


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_accepts_the_prometheus_configuration() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    assert config["alerting"]["alertmanagers"], "alerts go nowhere"
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert JOB in jobs, 'ScoreboardInstanceDown watches up{job="scoreboard"}'


def test_the_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = load_yaml(RULE_TESTS)
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts no unit test sees firing"
    assert names - quiet == set(), "alerts no unit test sees quiet"
    assert (firing | quiet) - names == set(), "unit tests of alerts that do not exist"


# --- What each alert carries -------------------------------------------------------------------


def test_alert_names_are_unique() -> None:
    names = alert_names()
    assert len(names) == len(set(names)), names


def test_every_alert_has_a_severity_a_category_and_a_runbook() -> None:
    for rule in alert_rules():
        name, labels, notes = rule["alert"], rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, name
        assert labels.get("category") in CATEGORIES, name
        for annotation in ("summary", "description", "runbook"):
            assert str(notes.get(annotation, "")).strip(), f"{name} has no {annotation}"


def test_the_rules_use_the_global_evaluation_interval() -> None:
    """No group sets its own interval: prometheus.yml's applies (1 s in the end-to-end test)."""
    for group in load_yaml(ALERTS)["groups"]:
        assert "interval" not in group, group["name"]


def test_the_suspicious_pattern_alerts_fire_within_a_minute() -> None:
    security = [rule for rule in alert_rules() if rule["labels"]["category"] == "security"]
    names = {rule["alert"] for rule in security}
    assert {
        "ScoreboardAbuseFlagRate",
        "ScoreboardReplaySpike",
        "ScoreboardForgedTicketSpike",
        "ScoreboardAuthFailureSpike",
    } <= names
    for rule in security:
        assert seconds(rule.get("for", "0s")) <= 60, rule["alert"]
        windows = [seconds(window) for window in RANGE.findall(rule["expr"])]
        assert windows, rule["alert"]
        assert max(windows) <= 600, rule["alert"]


def test_the_outcomes_the_alerts_match_are_real_refusal_codes() -> None:
    codes = {"accepted"}
    pending: list[type[ScoreboardError]] = [ScoreboardError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    for rule in alert_rules():
        for values in re.findall(r'outcome=~?"([^"]*)"', rule["expr"]):
            for outcome in values.split("|"):
                assert outcome in codes, (rule["alert"], outcome)


# --- Alertmanager ------------------------------------------------------------------------------


def _matches(matcher: str, labels: dict[str, str]) -> bool:
    parsed = MATCHER.match(matcher)
    assert parsed, f"cannot read the matcher {matcher!r}"
    name, op, value = parsed.groups()
    actual = labels.get(name, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    found = re.fullmatch(value, actual) is not None
    return found if op == "=~" else not found


def _receivers(route: dict[str, Any], labels: dict[str, str], parent: str = "") -> list[str]:
    """Where Alertmanager's routing tree sends an alert with these labels."""
    assert not {"match", "match_re"} & set(route), "use matchers:"
    receiver = route.get("receiver", parent)
    found: list[str] = []
    for child in route.get("routes", []):
        if all(_matches(matcher, labels) for matcher in child.get("matchers", [])):
            found += _receivers(child, labels, receiver)
            if not child.get("continue", False):
                break
    return found or [receiver]


def test_alertmanager_sends_security_alerts_to_moderation_and_the_rest_to_on_call() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert set(CATEGORIES.values()) <= set(receivers)
    for receiver in receivers.values():
        hooks = receiver.get("webhook_configs", [])
        assert hooks, f"{receiver['name']} is no webhook"
        assert all(hook["url"].startswith(("http://", "https://")) for hook in hooks)
    for rule in alert_rules():
        labels = {"alertname": rule["alert"], **rule["labels"]}
        expected = CATEGORIES[rule["labels"]["category"]]
        assert _receivers(config["route"], labels) == [expected], rule["alert"]


def test_alertmanager_names_only_alerts_that_exist() -> None:
    text = ALERTMANAGER_CONFIG.read_text()
    named = set(re.findall(r"\bScoreboard[A-Za-z]+", text))
    assert named, "the inhibition rules name the alerts they relate"
    assert named <= set(alert_names())
    config = load_yaml(ALERTMANAGER_CONFIG)
    for rule in config.get("inhibit_rules", []):
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            assert MATCHER.match(matcher), matcher
