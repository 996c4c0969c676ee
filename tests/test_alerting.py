"""Alert rules: promtool checks and unit tests, the annotation contract, and a real Prometheus +
Alertmanager end to end against the exporter."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from census_exporter.demo import DemoActivity, SimulatedWorkspace
from tests.conftest import Harness, require_tool, wait_for
from tests.stack import REPO, RULE_FILES, Alertmanager, Prometheus, run_tool

ALERTS = [
    "CensusSyncFailed",
    "CensusSyncNotSucceededRecently",
    "CensusSyncRecordsFailing",
    "CensusSyncRecordsInvalid",
    "CensusSyncStuck",
    "CensusExporterApiDown",
    "CensusExporterDataStale",
    "CensusExporterDown",
]


def alert_rules() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((REPO / "prometheus" / "alerts.yaml").read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def test_promtool_check_rules() -> None:
    result = run_tool(require_tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    tests = sorted((REPO / "prometheus" / "tests").glob("*.yaml"))
    assert tests
    result = run_tool(require_tool("promtool"), "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_firing_and_silent_unit_test_cases() -> None:
    cases: dict[str, list[bool]] = {}
    for path in (REPO / "prometheus" / "tests").glob("*.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for alert in ALERTS:
        assert True in cases.get(alert, []), f"{alert} has no firing case"
        assert False in cases.get(alert, []), f"{alert} has no silent case"


def test_example_configs_are_valid() -> None:
    prometheus = run_tool(
        require_tool("promtool"), "check", "config", str(REPO / "prometheus" / "prometheus.yml")
    )
    assert prometheus.returncode == 0, prometheus.stdout + prometheus.stderr
    alertmanager = run_tool(
        require_tool("amtool"), "check-config", str(REPO / "prometheus" / "alertmanager.yml")
    )
    assert alertmanager.returncode == 0, alertmanager.stdout + alertmanager.stderr


def test_alert_annotations_follow_the_contract() -> None:
    rules = alert_rules()
    assert sorted(rules) == sorted(ALERTS)
    runbook = (REPO / "docs" / "runbook.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^## (.+)$", runbook, re.MULTILINE)}
    for name, rule in rules.items():
        annotations = rule["annotations"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert "{{" in annotations["description"], f"{name}: description must be templated"
        if name.startswith("CensusSync"):
            for label in ("$labels.label", "$labels.sync_id", "$labels.workspace"):
                assert label in annotations["description"], f"{name} description lacks {label}"
            assert "census_sync_paused == 1" in rule["expr"], f"{name} must not page for paused syncs"
        assert annotations["runbook_url"].endswith(f"docs/runbook.md#{name.lower()}")
        assert name.lower() in anchors, f"docs/runbook.md has no section for {name}"
        assert annotations["dashboard_url"].startswith("https://")
        assert "census_sync_runs_total" not in rule["expr"], "counters reset on restart; alerts avoid them"


@pytest.fixture
def alerting_stack(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> Iterator[tuple[Harness, Prometheus, Alertmanager]]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    # The demo workspace, frozen in time, with one sync whose newest run failed.
    workspace = SimulatedWorkspace()
    DemoActivity(workspace, seed=11, syncs=6)
    workspace.add_run(1003, "failed", error_code="INVALID_CREDENTIALS", records=None)
    harness = harness_factory(workspace, start=True, cache_ttl=1.0)
    alertmanager = Alertmanager(tmp_path)
    prometheus = None
    try:
        prometheus = Prometheus(tmp_path, harness.exporter.port, alertmanager.port)
        yield harness, prometheus, alertmanager
    finally:
        if prometheus is not None:
            prometheus.proc.stop()
        alertmanager.proc.stop()


def test_failed_sync_reaches_alertmanager(alerting_stack: tuple[Harness, Prometheus, Alertmanager]) -> None:
    _, prometheus, alertmanager = alerting_stack

    def failed_alert() -> dict[str, Any] | None:
        for alert in alertmanager.alerts():
            labels = alert["labels"]
            if labels.get("alertname") == "CensusSyncFailed" and labels.get("sync_id") == "1003":
                return alert
        return None

    alert = wait_for(failed_alert, timeout=60, interval=0.5, what="CensusSyncFailed in Alertmanager")
    labels = alert["labels"]
    assert labels["severity"] == "critical"
    assert labels["workspace"] == "default"
    assert labels["job"] == "census-exporter"
    assert labels["label"] == "Leads to Salesforce"
    assert labels["destination"] == "Salesforce"
    assert labels["error_code"] == "INVALID_CREDENTIALS"
    assert alert["annotations"]["description"].startswith('Sync "Leads to Salesforce" (id 1003')
    assert alert["annotations"]["runbook_url"].endswith("#censussyncfailed")
    assert alert["status"]["state"] == "active"

    targets = prometheus.api("targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [("census-exporter", "up")]

    def all_rules_evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        evaluated = all(rule.get("lastEvaluation", "").startswith("2") for rule in rules)
        return rules if evaluated and rules else None

    rules = wait_for(all_rules_evaluated, timeout=30, what="every rule evaluated")
    assert len(rules) == 15
    assert {rule["name"]: rule["health"] for rule in rules} == {rule["name"]: "ok" for rule in rules}
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} == set(ALERTS)
