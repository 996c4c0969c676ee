"""The monitoring mixin (mixin/): it renders the committed rules, alerts and dashboard exactly, and its
_config (selector, thresholds, Grafana URL) reaches every expression and link it should."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import _gojsonnet
import yaml

from tests.conftest import require_tool
from tests.mixin import alert_rules, render
from tests.stack import REPO, run_tool

SELECTOR = 'job="census", cluster="eu-1"'
# A metric name in PromQL, with its matchers if it has any. No label or function here starts with "census".
METRIC = re.compile(r"\b(census[_:][a-z0-9_:]*[a-z0-9_]|up)\b(\{[^}]*\})?")
# Yours to record (docs/runbook.md), joined on (workspace, sync_id) only: it takes no selector.
UNSELECTED = {"census:sync_success_age_threshold_seconds"}
WORKSPACE = 'workspace=~"$workspace"'


def expressions(rendered: dict[str, Any]) -> dict[str, str]:
    """Rule or alert name -> expression, over the rules and the alerts."""
    found = {}
    for document in (rendered["rules"], rendered["alerts"]):
        for group in document["groups"]:
            for rule in group["rules"]:
                found[rule.get("alert") or rule["record"]] = rule["expr"]
    return found


def dashboard_queries(value: Any, where: str = "") -> list[tuple[str, str]]:
    """(where, query) for every `expr` and `query` string of a dashboard: targets, annotations, variables."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if key in ("expr", "query") and isinstance(item, str):
                found.append((f"{where}/{key}", item))
            else:
                found.extend(dashboard_queries(item, f"{where}/{key}"))
        return found
    if isinstance(value, list):
        return [query for n, item in enumerate(value) for query in dashboard_queries(item, f"{where}[{n}]")]
    return []


def without_selector(text: str) -> str:
    return text.replace("{" + SELECTOR + "}", "").replace(SELECTOR + ", ", "")


def test_committed_files_are_what_the_mixin_renders() -> None:
    """The CI drift check: prometheus/*.yaml, the dashboard and the chart's copies, byte for byte."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-mixin"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_mixin_entry_points_render_the_committed_rules() -> None:
    """`jsonnet -S mixin/alerts.jsonnet` (what a mixin user runs) gives the committed files, header aside."""
    for name in ("alerts", "rules"):
        committed = (REPO / "prometheus" / f"{name}.yaml").read_text().split("\n", 1)[1]
        text = json.loads(_gojsonnet.evaluate_file(str(REPO / "mixin" / f"{name}.jsonnet")))
        assert text + "\n" == committed, name
    dashboards = json.loads(_gojsonnet.evaluate_file(str(REPO / "mixin" / "dashboards.jsonnet")))
    assert dashboards["census-sync-runs.json"] == json.loads(
        (REPO / "grafana" / "census-sync-runs.json").read_text()
    )


def test_the_committed_files_name_their_source() -> None:
    for path in ("prometheus/alerts.yaml", "prometheus/rules.yaml", "helm/census-exporter/files/alerts.yaml"):
        assert (REPO / path).read_text().startswith("# Generated from the mixin by `make mixin`"), path


def test_the_plain_rules_carry_no_fake_dashboard_url() -> None:
    """Without _config.grafanaUrl there is no Grafana to link to: no dashboard_url, no placeholder host."""
    alerts = alert_rules(yaml.safe_load((REPO / "prometheus" / "alerts.yaml").read_text()))
    assert alerts
    for name, rule in alerts.items():
        assert "dashboard_url" not in rule["annotations"], name
    for path in [*REPO.glob("prometheus/**/*.yaml"), *REPO.glob("mixin/**/*sonnet"), *REPO.glob("helm/**/*")]:
        if path.is_file():
            assert "grafana.example.com" not in path.read_text(), path


def test_the_selector_reaches_every_vector_selector(tmp_path: Path) -> None:
    default = expressions(render())
    selected = expressions(render(censusExporterSelector=SELECTOR))
    assert selected.keys() == default.keys()
    for name, expr in selected.items():
        references = METRIC.findall(expr)
        assert references, name
        for metric, matchers in references:
            if metric in UNSELECTED:
                assert SELECTOR not in matchers, f"{name}: {metric}"
            else:
                assert matchers.startswith("{" + SELECTOR), f"{name}: {metric}{matchers} lacks the selector"
        # The selector is the only change.
        assert without_selector(expr) == default[name], name
    rules = tmp_path / "selected.yaml"
    rendered = render(censusExporterSelector=SELECTOR)
    rules.write_text(yaml.safe_dump({"groups": rendered["rules"]["groups"] + rendered["alerts"]["groups"]}))
    result = run_tool(require_tool("promtool"), "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_default_dashboard_query_matches_the_workspace() -> None:
    """The mixin puts the selector beside workspace=~"$workspace": every query must have one."""
    queries = dashboard_queries(render()["dashboard"])
    assert len(queries) > 20
    for where, query in queries:
        for metric, matchers in METRIC.findall(query):
            if query == "label_values(census_up, workspace)":
                continue
            assert WORKSPACE in matchers, f"{where}: {metric}{matchers}"


def test_the_selector_reaches_every_dashboard_query() -> None:
    default = render()["dashboard"]
    selected = render(censusExporterSelector=SELECTOR, dashboardUid="census-eu", dashboardTags=["eu"])[
        "dashboard"
    ]
    assert selected["uid"] == "census-eu" and selected["tags"] == ["eu"]
    pairs = list(zip(dashboard_queries(default), dashboard_queries(selected), strict=True))
    for (where, before), (_, after) in pairs:
        for metric, matchers in METRIC.findall(after):
            assert matchers.startswith("{" + SELECTOR), f"{where}: {metric}{matchers}"
        assert without_selector(after) == before, where


def test_thresholds_come_from_the_config(tmp_path: Path) -> None:
    config = {
        "syncNotSucceededSeconds": 172800,
        "syncRecordsFailedRatio": 0.25,
        "syncRecordsInvalidRatio": 0.125,
        "syncStuckSeconds": 3600,
        "exporterDataStaleSeconds": 600,
    }
    default = alert_rules(render()["alerts"])
    changed = alert_rules(render(**config)["alerts"])
    for alert, before, after in [
        ("CensusSyncNotSucceededRecently", "* 0 + 86400)", "* 0 + 172800)"),
        ("CensusSyncRecordsFailing", "ratio > 0.1\n", "ratio > 0.25\n"),
        ("CensusSyncRecordsInvalid", "ratio > 0.05\n", "ratio > 0.125\n"),
        ("CensusSyncStuck", "_seconds) > 21600\n", "_seconds) > 3600\n"),
        ("CensusExporterDataStale", "_seconds > 1800", "_seconds > 600"),
    ]:
        assert before in default[alert]["expr"] and after not in default[alert]["expr"], alert
        assert changed[alert]["expr"] == default[alert]["expr"].replace(before, after), alert


def test_a_grafana_url_links_every_alert_to_its_workspace_and_sync(tmp_path: Path) -> None:
    """promtool renders the links: the alert's workspace and sync name, URL-encoded, under the Grafana
    URL's own path (a trailing slash is dropped)."""
    rendered = render(grafanaUrl="https://grafana.acme.test/grafana/")
    alerts = alert_rules(rendered["alerts"])
    assert all("dashboard_url" in rule["annotations"] for rule in alerts.values())
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rendered["rules"]["groups"] + rendered["alerts"]["groups"]}))
    target = 'job="census-exporter",instance="exporter:10049"'
    sync = f'{target},workspace="sales & ops",sync_id="7"'
    info = f'census_sync_info{{{sync},label="Contacts to HubSpot",destination="HubSpot"}}'
    board = "https://grafana.acme.test/grafana/d/census-sync-runs/census-sync-runs"
    failed = alerts["CensusSyncFailed"]["annotations"]
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'census_sync_last_finished_run_failed{{{sync},error_code="E"}}',
                        "values": "1x3",
                    },
                    {"series": f"census_sync_paused{{{sync}}}", "values": "0x3"},
                    {"series": info, "values": "1x3"},
                    {"series": f"up{{{target}}}", "values": "0x10"},
                    {"series": f"census_exporter_build_info{{{target}}}", "values": "1x10"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "1m",
                        "alertname": "CensusSyncFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "census-exporter",
                                    "instance": "exporter:10049",
                                    "workspace": "sales & ops",
                                    "sync_id": "7",
                                    "error_code": "E",
                                    "label": "Contacts to HubSpot",
                                    "destination": "HubSpot",
                                },
                                "exp_annotations": {
                                    "summary": failed["summary"],
                                    "description": 'Sync "Contacts to HubSpot" (id 7, to HubSpot) in '
                                    "workspace sales & ops is failing: its newest finished run failed, "
                                    "and no run has completed since. The streak began with error code "
                                    '"E".',
                                    "runbook_url": failed["runbook_url"],
                                    "dashboard_url": f"{board}?var-workspace=sales+%26+ops"
                                    "&var-sync=Contacts+to+HubSpot",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "6m",
                        "alertname": "CensusExporterDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "census-exporter",
                                    "instance": "exporter:10049",
                                },
                                "exp_annotations": {
                                    "summary": "census-exporter is down or not scraped.",
                                    "description": "Prometheus cannot scrape census-exporter exporter:10049: "
                                    "Census syncs are not being monitored.",
                                    "runbook_url": alerts["CensusExporterDown"]["annotations"]["runbook_url"],
                                    "dashboard_url": board,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "links_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = run_tool(require_tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
