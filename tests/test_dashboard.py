"""The Grafana dashboard: generated from code, structurally sound, and every query works on real data."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from census_exporter.config import Exposition
from census_exporter.demo import DemoActivity, SimulatedOrganization, SimulatedWorkspace
from census_exporter.demo.organization import base_url
from census_exporter.workspaces import load_workspaces_file
from tests.conftest import Harness, require_tool, wait_for
from tests.stack import REPO, Prometheus, free_port, promtool_check_expressions, run_tool

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


def substitute(expr: str, workspace: str = "default") -> str:
    """A dashboard expression as Grafana would send it with every sync picked and ``workspace`` as the
    workspace selection: one name, ``(a|b)`` for several, ``.*`` for All."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1h")
        .replace("$workspace", workspace)
        .replace("$sync", ".*")
    )


def queries(document: dict[str, Any], workspace: str = "default") -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation, variables substituted."""
    found = [
        (f"{panel['title']} / {target['refId']}", substitute(target["expr"], workspace))
        for panel in panels(document)
        for target in panel.get("targets", [])
    ]
    found += [
        (f"annotation {annotation['name']}", substitute(annotation["expr"], workspace))
        for annotation in document["annotations"]["list"]
    ]
    return found


def variable(name: str) -> dict[str, Any]:
    (found,) = [v for v in load()["templating"]["list"] if v["name"] == name]
    return found


def sync_variable_selector() -> str:
    """The series selector whose ``label`` values the sync variable offers."""
    match = re.fullmatch(r"label_values\((.+), label\)", variable("sync")["query"])
    assert match, variable("sync")["query"]
    return match.group(1)


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
    workspace = variables["workspace"]
    assert workspace["datasource"] == DATASOURCE
    # Several workspaces at once: Grafana sends one name, (a|b) or, for All, the regex .*
    assert workspace["multi"] and workspace["includeAll"] and workspace["allValue"] == ".*"
    sync = variables["sync"]
    assert sync["multi"] and sync["includeAll"] and "label)" in sync["query"]
    assert 'workspace=~"$workspace"' in sync["query"], "the sync list follows the selected workspaces"
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


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matchers) for every census series selector in ``expr``; matchers empty when there are none."""
    return re.findall(r"\b(census[_:][a-z0-9_:]*)(?:\{([^}]*)\})?", expr)


def test_every_selector_follows_the_workspace_variable() -> None:
    document = load()
    expressions = [target["expr"] for panel in panels(document) for target in panel.get("targets", [])]
    expressions += [annotation["expr"] for annotation in document["annotations"]["list"]]
    expressions.append(variable("sync")["query"])
    found = [selector for expr in expressions for selector in selectors(expr)]
    assert len(found) > len(expressions)
    for metric, matchers in found:
        assert 'workspace=~"$workspace"' in matchers, f"{metric}{{{matchers}}} ignores the workspace variable"
    exact = [expr for expr in expressions if 'workspace="' in expr]
    assert not exact, f"an exact workspace match breaks with several workspaces: {exact}"


def test_per_sync_rows_and_series_name_their_workspace() -> None:
    """Sync ids and names repeat across workspaces: every row and series of a sync says which workspace."""
    document = load()
    table = panel("Syncs", "table")
    for target in table["targets"]:
        for grouping in re.findall(r"\bby \(([^)]*)\)", target["expr"]):
            assert {"workspace", "sync_id"} <= {label.strip() for label in grouping.split(",")}, target[
                "refId"
            ]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    assert organize["renameByName"]["workspace"] == "Workspace"
    assert "workspace" not in organize["excludeByName"]
    legends = [
        target.get("legendFormat", "")
        for panel in panels(document)
        for target in panel.get("targets", [])
        if panel["type"] == "timeseries"
    ]
    for legend in legends:
        if re.search(r"{{(label|sync_id|instance)}}", legend):
            assert "{{workspace}}" in legend, legend
    assert any("{{label}}" in legend for legend in legends)
    for annotation in document["annotations"]["list"]:
        assert "{{workspace}}" in annotation["titleFormat"]
        assert "workspace" in annotation["tagKeys"].split(",")


def test_every_query_parses(tmp_path: Path) -> None:
    result = promtool_check_expressions([expr for _, expr in queries(load())], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def referenced_names(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    text = " ".join(expr for _, expr in queries(document))
    text += " ".join(v.get("query", "") for v in document["templating"]["list"] if v["type"] == "query")
    metrics = set(re.findall(r"\bcensus_[a-z0-9_]+", text))
    recorded = set(re.findall(r"\bcensus:[a-z0-9_:]+", text))
    return metrics, recorded


#: Each --census.duration-histogram setting (and both --census.record-totals settings among them).
EXPOSITIONS = {
    "histogram per workspace (default)": Exposition(),
    "histogram per sync, everything per sync": Exposition.everything(),
    "histogram off": Exposition(duration_histogram="off"),
}


def test_every_metric_named_is_one_the_exporter_exposes(harness_factory: Callable[..., Harness]) -> None:
    """Under some setting: a query may read the per-sync or the per-workspace form of a total."""
    exposed: set[str] = set()
    for exposition in EXPOSITIONS.values():
        workspace = SimulatedWorkspace()
        DemoActivity(workspace, seed=5, syncs=5)
        workspace.add_run(1001, "failed", error_code="INVALID_CREDENTIALS", records=None)
        exposed |= {name for name, _ in harness_factory(workspace, exposition=exposition).scrape().samples}
    metrics, recorded = referenced_names(load())
    assert metrics, "no census_ metric found in the dashboard"
    assert metrics <= exposed, f"not exposed by the exporter: {sorted(metrics - exposed)}"
    rules = yaml.safe_load((REPO / "prometheus" / "rules.yaml").read_text())
    defined = {rule["record"] for group in rules["groups"] for rule in group["rules"]}
    assert recorded <= defined, f"not recorded by prometheus/rules.yaml: {sorted(recorded - defined)}"


@pytest.fixture(params=list(EXPOSITIONS.values()), ids=list(EXPOSITIONS))
def prometheus_on_demo(
    harness_factory: Callable[..., Harness], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Harness, Prometheus]]:
    """One demo workspace under each exposition setting (the two-workspace test runs the default only)."""
    workspace = SimulatedWorkspace()
    DemoActivity(workspace, seed=5, syncs=8)
    harness = harness_factory(workspace, start=True, cache_ttl=1.0, exposition=request.param)
    prometheus = Prometheus(tmp_path, harness.exporter.port)
    try:
        yield harness, prometheus
    finally:
        prometheus.proc.stop()


def assert_every_query_returns_data(prometheus: Prometheus, workspace: str) -> None:
    """Every panel query and the annotation return data with ``workspace`` as the workspace selection."""
    all_queries = queries(load(), workspace)
    empty: list[str] = []

    def every_query_has_data() -> bool:
        # All at once (Prometheus answers queries in parallel): one poll is one moment, not 30 s of queries.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(prometheus.query, [expr for _, expr in all_queries]))
        empty[:] = [where for (where, _), answer in zip(all_queries, answers, strict=True) if not answer]
        return not empty

    wait_for(
        every_query_has_data,
        timeout=60,
        interval=1.0,
        what=lambda: f"data for every query with workspace=~{workspace!r}; empty: {empty}",
    )


def assert_failures_sort_first(prometheus: Prometheus, workspace: str) -> None:
    """The table's sort column ranks each real sync of the selection by its newest run's status."""
    # Both queries read the same scrape: runs may finish between them.
    moment = str(max(float(row["value"][1]) for row in prometheus.query("timestamp(census_up)")))

    def query(expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = prometheus.api("query", query=expr, time=moment)["result"]
        return result

    statuses = {
        (row["metric"]["workspace"], row["metric"]["sync_id"]): row["metric"]["status"]
        for row in query(f'census_sync_last_run_status{{workspace=~"{workspace}"}} == 1')
    }
    severities = {
        (row["metric"]["workspace"], row["metric"]["sync_id"]): float(row["value"][1])
        for row in query(substitute(severity_query(), workspace))
    }
    assert "failed" in statuses.values()
    assert severities == {key: SEVERITY[status] for key, status in statuses.items()}


def sync_choices(prometheus: Prometheus, workspace: str) -> set[str]:
    """The names the sync variable offers with ``workspace`` selected, as Grafana's label_values() asks."""
    selector = substitute(sync_variable_selector(), workspace)
    return set(prometheus.api("label/label/values", **{"match[]": selector}))


def test_every_panel_query_returns_data(prometheus_on_demo: tuple[Harness, Prometheus]) -> None:
    harness, prometheus = prometheus_on_demo
    wait_for(lambda: prometheus.query("census_up"), timeout=30, what="the first sample in Prometheus")
    # A run fails while Prometheus watches, so the failed-runs annotation has something to show.
    harness.workspace.add_run(1001, "failed", error_code="INVALID_CREDENTIALS", records=None)
    assert_every_query_returns_data(prometheus, "default")
    assert_failures_sort_first(prometheus, "default")
    assert sync_choices(prometheus, "default") == {sync["label"] for sync in harness.workspace.syncs.values()}


# DemoActivity numbers the syncs of every workspace from 1001: two demo workspaces share their sync ids.
COLLIDING_SYNC_ID = 1001
# What Grafana sends for the workspace variable: All, both picked, each alone.
TWO_WORKSPACE_SELECTIONS = (".*", "(marketing|sales)", "marketing", "sales")


@dataclass
class TwoWorkspaceDemo:
    """One simulated organization with two demo workspaces whose runs happen as time passes: "marketing"
    (8 syncs, spoken to as V1) and "sales" (12 syncs, V2 group ``sales_group``). Sync ids 1001 to 1008
    exist in both."""

    organization: SimulatedOrganization
    activities: list[DemoActivity]
    # While paused the runs stand still, so a test can read a state that the next request would replace.
    paused: bool = False

    @property
    def workspaces(self) -> dict[str, SimulatedWorkspace]:
        return {member.name: member.workspace for member in self.organization.members}

    def advance(self) -> None:
        if self.paused:
            return
        for activity in self.activities:
            activity.advance()


@pytest.fixture
def two_workspace_demo() -> Iterator[TwoWorkspaceDemo]:
    organization = SimulatedOrganization(pat="secret-token:dashboard-organization")
    activities = []
    for name, group_id, seed, syncs in (("marketing", None, 5, 8), ("sales", "sales_group", 6, 12)):
        workspace = SimulatedWorkspace()
        activities.append(DemoActivity(workspace, seed=seed, syncs=syncs))
        organization.add_workspace(name, group_id=group_id, workspace=workspace)
    demo = TwoWorkspaceDemo(organization, activities)
    server = organization.serve(before_request=demo.advance)
    try:
        yield demo
    finally:
        server.close()


@pytest.fixture
def two_workspace_exporter_url(two_workspace_demo: TwoWorkspaceDemo, tmp_path: Path) -> Iterator[str]:
    """The base URL of one census-exporter process serving both workspaces of ``two_workspace_demo`` from a
    workspaces file: marketing with its V1 workspace key, sales with the organization's V2 token."""
    organization = two_workspace_demo.organization
    assert organization.server is not None
    marketing, sales = organization.members
    tokens = {"marketing": marketing.api_key, "sales": organization.pat}
    for name, token in tokens.items():
        (tmp_path / f"{name}.token").write_text(token + "\n")
    entries = [
        {
            "name": "marketing",
            "api_version": "v1",
            "api_url": base_url(organization.server, "v1"),
            "token_file": str(tmp_path / "marketing.token"),
        },
        {
            "name": "sales",
            "api_version": "v2",
            "api_url": base_url(organization.server, "v2"),
            "group_id": sales.group_id,
            "token_file": str(tmp_path / "sales.token"),
        },
    ]
    config_file = tmp_path / "workspaces.yaml"
    config_file.write_text(yaml.safe_dump({"workspaces": entries}))
    assert [w.name for w in load_workspaces_file(config_file).workspaces] == ["marketing", "sales"]
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "exporter.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUS_", "WEB_", "LOG_"))}
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "census_exporter",
                "--config.file",
                str(config_file),
                "--web.listen-address",
                url.removeprefix("http://"),
                "--census.cache-ttl",
                "1",
                # No request budget: at a 1 s TTL the panels need every sync read on every refresh.
                "--census.max-requests-per-second",
                "0",
            ],
            env=clean,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def serving() -> bool:
            assert process.poll() is None, f"census-exporter exited: {log.read_text()[-4000:]}"
            try:
                return httpx.get(f"{url}/metrics", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(serving, timeout=30, what=lambda: f"census-exporter serving\n{log.read_text()[-4000:]}")
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_every_panel_query_returns_data_for_two_workspaces(
    two_workspace_exporter_url: str, two_workspace_demo: TwoWorkspaceDemo, tmp_path: Path
) -> None:
    """One exporter, two workspaces with the same sync ids: every query returns data for All, for both
    picked and for each alone, and the same sync id in both workspaces stays two rows and two series."""
    port = httpx.URL(two_workspace_exporter_url).port
    assert port is not None
    prometheus = Prometheus(tmp_path, port)
    workspaces = two_workspace_demo.workspaces
    try:
        wait_for(
            lambda: {row["metric"]["workspace"] for row in prometheus.query("census_up")} == set(workspaces),
            timeout=30,
            what="census_up of both workspaces in Prometheus",
        )
        # The same sync fails in both workspaces, so the failed-runs annotation has something in each.
        for workspace in workspaces.values():
            workspace.add_run(COLLIDING_SYNC_ID, "failed", error_code="INVALID_CREDENTIALS", records=None)
        for selection in TWO_WORKSPACE_SELECTIONS:
            assert_every_query_returns_data(prometheus, selection)
        # The demo's own activity starts the next run of a sync within seconds: hold the runs still, fail the
        # colliding sync once more and wait for Prometheus to see it, so the order is checked on a failure.
        two_workspace_demo.paused = True
        for workspace in workspaces.values():
            workspace.add_run(COLLIDING_SYNC_ID, "failed", error_code="INVALID_CREDENTIALS", records=None)
        failed_newest = {(name, str(COLLIDING_SYNC_ID)) for name in workspaces}
        wait_for(
            lambda: (
                failed_newest
                <= {
                    (row["metric"]["workspace"], row["metric"]["sync_id"])
                    for row in prometheus.query('census_sync_last_run_status{status="failed"} == 1')
                }
            ),
            timeout=30,
            what="the colliding sync's failed newest run in both workspaces in Prometheus",
        )
        for selection in TWO_WORKSPACE_SELECTIONS:
            assert_failures_sort_first(prometheus, selection)
        for name, workspace in workspaces.items():
            assert sync_choices(prometheus, name) == {sync["label"] for sync in workspace.syncs.values()}
        assert sync_choices(prometheus, ".*") == set().union(
            *(sync_choices(prometheus, n) for n in workspaces)
        )

        colliding = {(name, str(COLLIDING_SYNC_ID)) for name in workspaces}
        for title, kind, ref in (
            ("Syncs", "table", "A"),
            ("Syncs", "table", "B"),
            ("Time since last success", "timeseries", "A"),
        ):
            (target,) = [t for t in panel(title, kind)["targets"] if t["refId"] == ref]
            rows = prometheus.query(substitute(target["expr"], ".*"))
            keys = [(row["metric"]["workspace"], row["metric"]["sync_id"]) for row in rows]
            assert colliding <= set(keys), f"{title} / {ref}: {sorted(keys)}"
            assert len(keys) == len(set(keys)), f"{title} / {ref}: a sync shown twice"
    finally:
        prometheus.proc.stop()


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
    """promtool evaluates the table's sort query, with the shipped rules and All workspaces, for one sync in
    each status in each of two workspaces whose sync ids are the same and whose statuses differ."""
    expr = substitute(severity_query(), ".*")
    newest_status = {"marketing": list(SEVERITY), "sales": list(reversed(SEVERITY))}
    input_series = []
    expected = []
    for workspace, statuses in newest_status.items():
        common_labels = f'job="census-exporter",instance="e:10049",workspace="{workspace}"'
        for sync_id, newest in enumerate(statuses, start=1):
            input_series.append(
                {
                    "series": f"census_sync_last_run_status{{{common_labels},"
                    f'sync_id="{sync_id}",status="{newest}"}}',
                    "values": "1x5",
                }
            )
            input_series.append(
                {
                    "series": f"census_sync_info{{{common_labels},"
                    f'sync_id="{sync_id}",label="Sync {sync_id}"}}',
                    "values": "1x5",
                }
            )
            expected.append(
                {"labels": f'{{workspace="{workspace}",sync_id="{sync_id}"}}', "value": SEVERITY[newest]}
            )
    tests = {
        "rule_files": [str(REPO / "prometheus" / "rules.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": expected}],
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
    (default_threshold,) = re.findall(r"\) \* 0 \+ (\d+)\)", alerts)
    defaults = panel("Time since last success")["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    steps = defaults["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": int(default_threshold)}


def seconds(duration: str) -> int:
    """A Grafana duration such as ``15s``, ``1m`` or ``1h`` in seconds."""
    number, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def grafana_rate_interval(interval: int, min_step: str | None, datasource_scrape: int) -> int:
    """$__rate_interval as Grafana 11 computes it: max($__interval + step, 4 x step), where step is the
    query's Min step when set, else the data source's scrape interval."""
    step = seconds(min_step) if min_step else datasource_scrape
    return max(interval + step, 4 * step)


def test_rate_panels_keep_four_60s_scrapes_when_zoomed_in() -> None:
    """Issue 21: with the recommended 60 s scrape and Grafana's default data source scrape interval (15 s),
    zoomed in, $__rate_interval was 1m: a window that often holds one sample, so rate() drew nothing."""
    scrape = 60
    rate_panels = [
        p for p in panels(load()) if any("$__rate_interval" in t["expr"] for t in p.get("targets", []))
    ]
    assert {"Records", "API requests by response code", "API latency"} <= {p["title"] for p in rate_panels}
    for rate_panel in rate_panels:
        # Zoomed in as far as the panel allows: $__interval is its Min interval.
        smallest_interval = seconds(rate_panel["interval"])
        assert smallest_interval >= scrape, rate_panel["title"]
        for target in rate_panel["targets"]:
            if "$__rate_interval" not in target["expr"]:
                continue
            for datasource_scrape in (15, 60):
                window = grafana_rate_interval(smallest_interval, target.get("interval"), datasource_scrape)
                assert window >= 4 * scrape, (rate_panel["title"], target["refId"], datasource_scrape, window)


def test_dashboard_doc_says_to_set_the_data_source_scrape_interval() -> None:
    text = " ".join((REPO / "docs" / "dashboard.md").read_text().split())
    assert "Scrape interval" in text and "60s" in text and "Min step" in text
