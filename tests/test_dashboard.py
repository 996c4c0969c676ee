"""The Grafana dashboard: generated from code, structurally sound, and every query works on real data."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from census_exporter.demo import DemoActivity, SimulatedWorkspace
from tests.conftest import Harness, require_tool, wait_for
from tests.stack import REPO, Prometheus, promtool_check_expressions, run_tool

DASHBOARD = REPO / "grafana" / "census-sync-runs.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 41  # Grafana 11.x, from the pinned grafana-foundation-sdk


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in document["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def substitute(expr: str) -> str:
    """A dashboard expression as Grafana would send it with workspace "default" and every sync picked."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1h")
        .replace("$workspace", "default")
        .replace("$sync", ".*")
    )


def queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation, variables substituted."""
    found = [
        (f"{panel['title']} / {target['refId']}", substitute(target["expr"]))
        for panel in panels(document)
        for target in panel.get("targets", [])
    ]
    found += [
        (f"annotation {annotation['name']}", substitute(annotation["expr"]))
        for annotation in document["annotations"]["list"]
    ]
    return found


def test_committed_json_is_what_the_code_builds() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_structure() -> None:
    document = load()
    assert document["uid"] == "census-sync-runs"
    assert document["schemaVersion"] == SCHEMA_VERSION
    assert {"census", "census-exporter"} <= set(document["tags"])
    all_panels = panels(document)
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for first, second in itertools.combinations(all_panels, 2):
        a, b = first["gridPos"], second["gridPos"]
        overlap = (
            a["x"] < b["x"] + b["w"]
            and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"]
            and b["y"] < a["y"] + a["h"]
        )
        assert not overlap, f"{first['title']} overlaps {second['title']}"
    for panel in all_panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
        assert panel.get("description"), f"{panel['title']} has no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has no unit"
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["workspace"]["datasource"] == DATASOURCE
    sync = variables["sync"]
    assert sync["multi"] and sync["includeAll"] and "label)" in sync["query"]
    assert document["annotations"]["list"][0]["datasource"] == DATASOURCE


def test_the_expected_panels_exist() -> None:
    titles = {panel["title"] for panel in panels(load())}
    assert {
        "Syncs",
        "Failing now",
        "Running now",
        "Success ratio (24h)",
        "Records processed (24h)",
        "Records rejected (24h)",
        "Census API",
        "Runs by status",
        "Records",
        "Run duration",
        "Time since last success",
        "Census API up",
        "Refresh duration",
        "API requests by response code",
        "API latency",
        "Exporter health",
    } <= titles
    table = next(panel for panel in panels(load()) if panel["type"] == "table")
    links = json.dumps(table["fieldConfig"]["overrides"])
    assert "${census_url}/syncs/${__data.fields.Id}" in links
    assert '"failed"' in links and '"red"' in links
    # Every column is filtered by the Sync variable, or the merge would add rows for unselected syncs.
    assert all('label=~"$sync"' in target["expr"] for target in table["targets"])


def test_every_query_parses(tmp_path: Path) -> None:
    result = promtool_check_expressions([expr for _, expr in queries(load())], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def referenced_names(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    text = " ".join(expr for _, expr in queries(document))
    text += " ".join(v.get("query", "") for v in document["templating"]["list"] if v["type"] == "query")
    metrics = set(re.findall(r"\bcensus_[a-z0-9_]+", text))
    recorded = set(re.findall(r"\bcensus:[a-z0-9_:]+", text))
    return metrics, recorded


def test_every_metric_named_is_one_the_exporter_exposes(harness_factory: Callable[..., Harness]) -> None:
    workspace = SimulatedWorkspace()
    DemoActivity(workspace, seed=5, syncs=5)
    workspace.add_run(1001, "failed", error_code="INVALID_CREDENTIALS", records=None)
    exposed = {name for name, _ in harness_factory(workspace).scrape().samples}
    metrics, recorded = referenced_names(load())
    assert metrics, "no census_ metric found in the dashboard"
    assert metrics <= exposed, f"not exposed by the exporter: {sorted(metrics - exposed)}"
    rules = yaml.safe_load((REPO / "prometheus" / "rules.yaml").read_text())
    defined = {rule["record"] for group in rules["groups"] for rule in group["rules"]}
    assert recorded <= defined, f"not recorded by prometheus/rules.yaml: {sorted(recorded - defined)}"


@pytest.fixture
def prometheus_on_demo(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> Iterator[tuple[Harness, Prometheus]]:
    workspace = SimulatedWorkspace()
    DemoActivity(workspace, seed=5, syncs=8)
    harness = harness_factory(workspace, start=True, cache_ttl=1.0)
    prometheus = Prometheus(tmp_path, harness.exporter.port)
    try:
        yield harness, prometheus
    finally:
        prometheus.proc.stop()


def test_every_panel_query_returns_data(prometheus_on_demo: tuple[Harness, Prometheus]) -> None:
    harness, prometheus = prometheus_on_demo
    wait_for(lambda: prometheus.query("census_up"), timeout=30, what="the first sample in Prometheus")
    # A run fails while Prometheus watches, so the failed-runs annotation has something to show.
    harness.workspace.add_run(1001, "failed", error_code="INVALID_CREDENTIALS", records=None)
    all_queries = queries(load())

    empty: list[str] = []

    def every_query_has_data() -> bool:
        empty[:] = [where for where, expr in all_queries if not prometheus.query(expr)]
        return not empty

    wait_for(
        every_query_has_data, timeout=60, interval=1.0, what=lambda: f"data for every query; empty: {empty}"
    )

    # The table's sort column orders real syncs by their newest run's status: failures first.
    statuses = {
        row["metric"]["sync_id"]: row["metric"]["status"]
        for row in prometheus.query('census_sync_last_run_status{workspace="default"} == 1')
    }
    severities = {
        row["metric"]["sync_id"]: float(row["value"][1])
        for row in prometheus.query(substitute(severity_query()))
    }
    assert "failed" in statuses.values()
    assert severities == {sync_id: SEVERITY[status] for sync_id, status in statuses.items()}


def panel(title: str, kind: str = "timeseries") -> dict[str, Any]:
    (found,) = [c for c in panels(load()) if c["title"] == title and c["type"] == kind]
    return found


SEVERITY = {"failed": 0, "working": 1, "queued": 1, "skipped": 2, "completed": 3}


def severity_query() -> str:
    """The sync table's query that orders its rows: the field its sortBy transformation sorts on."""
    table = panel("Syncs", "table")
    ids = [transformation["id"] for transformation in table["transformations"]]
    assert ids.index("sortBy") < ids.index("organize"), "sort before the sort column is hidden"
    (sort,) = next(t for t in table["transformations"] if t["id"] == "sortBy")["options"]["sort"]
    assert sort["desc"] is False
    ref = sort["field"].removeprefix("Value #")
    (target,) = [target for target in table["targets"] if target["refId"] == ref]
    # The panel itself must not re-sort the rows by the status text.
    assert not table.get("options", {}).get("sortBy"), "a panel sortBy would override the severity order"
    return str(target["expr"])


def test_sync_table_sorts_failures_first(tmp_path: Path) -> None:
    """promtool evaluates the table's sort query for one sync in each status, with the shipped rules."""
    expr = substitute(severity_query())
    common_labels = 'job="census-exporter",instance="e:10049",workspace="default"'
    status_series = "census_sync_last_run_status{{" + common_labels + ',sync_id="{}",status="{}"}}'
    input_series = []
    for sync_id, newest in enumerate(SEVERITY, start=1):
        for status in SEVERITY:
            input_series.append(
                {
                    "series": status_series.format(sync_id, status),
                    "values": "1x5" if status == newest else "0x5",
                }
            )
        input_series.append(
            {
                "series": f'census_sync_info{{{common_labels},sync_id="{sync_id}",label="Sync {sync_id}"}}',
                "values": "1x5",
            }
        )
    tests = {
        "rule_files": [str(REPO / "prometheus" / "rules.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{{sync_id="{sync_id}"}}', "value": SEVERITY[status]}
                            for sync_id, status in enumerate(SEVERITY, start=1)
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "severity_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = run_tool(require_tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_by_status_shows_whole_runs_per_fixed_interval() -> None:
    runs = panel("Runs by status")
    (target,) = runs["targets"]
    assert target["expr"].startswith("round(")
    assert "[$__interval]" in target["expr"] and "$__rate_interval" not in target["expr"]
    assert runs["interval"] == "1h", "a minimum interval of an hour: bars read as runs per hour"
    assert runs["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    assert runs["fieldConfig"]["defaults"]["decimals"] == 0


def test_time_since_last_success_draws_the_alert_threshold() -> None:
    alerts = (REPO / "prometheus" / "alerts.yaml").read_text()
    (default_threshold,) = re.findall(r"census_sync_last_success_timestamp_seconds \* 0 \+ (\d+)", alerts)
    defaults = panel("Time since last success")["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    steps = defaults["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": int(default_threshold)}
