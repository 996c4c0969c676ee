"""The chart's per-alert values (``prometheusRule.alerts``), rendered by the real helm: every alert the
PrometheusRule carries has an entry, so each can be turned off and tuned (issue 21: three had none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack import promtool_check_groups
from tests.test_deployment import CHART, by_kind, helm, render

#: The alerts that had no values entry before (always on, not tunable); the webhook alert that had none has
#: since become two.
ADDED = ["CensusSyncRunFailed", "CensusExporterTruncated", "CensusWebhooksSilent", "CensusWebhooksRejected"]


def shipped_alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def values_alerts() -> dict[str, dict[str, Any]]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    alerts: dict[str, dict[str, Any]] = values["prometheusRule"]["alerts"]
    return alerts


def rendered_alerts(*values: str) -> dict[str, dict[str, Any]]:
    documents = render("--set", "prometheusRule.enabled=true", *values)
    groups = by_kind(documents, "PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_shipped_alert_has_a_values_entry_with_its_own_defaults() -> None:
    shipped, values = shipped_alerts(), values_alerts()
    assert sorted(values) == sorted(shipped)
    for name, rule in shipped.items():
        entry = values[name]
        assert entry["enabled"] is True, name
        assert entry["severity"] == rule["labels"]["severity"], name
        assert entry["for"] == rule.get("for", "0m"), name
    # Every entry is in the schema (which refuses unknown alerts), threshold only where one is applied.
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    properties = schema["properties"]["prometheusRule"]["properties"]["alerts"]["properties"]
    assert sorted(properties) == sorted(shipped)
    for name in ADDED:
        assert "threshold" not in properties[name]["properties"], name


def test_by_default_the_rendered_alerts_are_the_shipped_ones() -> None:
    rendered, shipped = rendered_alerts(), shipped_alerts()
    assert sorted(rendered) == sorted(shipped)
    for name in ADDED:
        assert rendered[name]["for"] == shipped[name]["for"]
        assert rendered[name]["labels"] == shipped[name]["labels"]


@pytest.mark.parametrize("name", ADDED)
def test_each_added_alert_can_be_turned_off_alone(name: str) -> None:
    rendered = rendered_alerts("--set", f"prometheusRule.alerts.{name}.enabled=false")
    assert name not in rendered
    assert sorted(rendered) == sorted(set(shipped_alerts()) - {name})


def test_the_added_alerts_take_their_severity_and_for(tmp_path: Path) -> None:
    settings = []
    for name in ADDED:
        settings += ["--set", f"prometheusRule.alerts.{name}.severity=critical"]
        settings += ["--set", f"prometheusRule.alerts.{name}.for=1h"]
    rendered = rendered_alerts(*settings)
    for name in ADDED:
        assert rendered[name]["labels"]["severity"] == "critical", name
        assert rendered[name]["for"] == "1h", name
        assert rendered[name]["expr"] == shipped_alerts()[name]["expr"], name
    groups = [{"name": "added", "rules": [rendered[name] for name in ADDED]}]
    result = promtool_check_groups(groups, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "bad",
    [
        "prometheusRule.alerts.CensusExporterTruncated.threshold=5",  # it has none: not silently ignored
        "prometheusRule.alerts.CensusSyncRunFailed.severity=page",
        "prometheusRule.alerts.CensusWebhooksSilent.for=soon",
        "prometheusRule.alerts.CensusWebhooksRejected.severity=page",
        "prometheusRule.alerts.CensusExporterTruncated.enable=false",  # a typo
    ],
)
def test_the_schema_refuses_what_the_added_entries_cannot_take(bad: str) -> None:
    result = helm("template", "census", str(CHART), "--set", "prometheusRule.enabled=true", "--set", bad)
    assert result.returncode != 0, f"accepted {bad}"
    assert "schema" in result.stderr, result.stderr
