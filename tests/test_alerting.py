"""Alert rules: promtool checks and unit tests, the annotation contract, and a real Prometheus +
Alertmanager end to end against the exporter."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from census_exporter.demo import DemoActivity, SimulatedWorkspace
from tests import mixin
from tests.conftest import Harness, require_tool, wait_for
from tests.stack import REPO, RULE_FILES, Alertmanager, Prometheus, run_tool

ALERTS = [
    "CensusSyncFailed",
    "CensusSyncRunFailed",
    "CensusSyncNotSucceededRecently",
    "CensusSyncRecordsFailing",
    "CensusSyncRecordsInvalid",
    "CensusSyncStuck",
    "CensusExporterApiDown",
    "CensusExporterDataStale",
    "CensusExporterDown",
    "CensusExporterTruncated",
    "CensusWebhooksSilent",
    "CensusWebhooksRejected",
]


def alert_rules() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((REPO / "prometheus" / "alerts.yaml").read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def test_promtool_check_rules() -> None:
    result = run_tool(require_tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


UNIT_TEST_FILES = sorted((REPO / "prometheus" / "tests").glob("*.yaml"))
#: Every test group of every promtool unit test file, as (file, index in its ``tests``).
UNIT_TESTS = [
    (path, index)
    for path in UNIT_TEST_FILES
    for index in range(len(yaml.safe_load(path.read_text())["tests"]))
]


@pytest.mark.parametrize(
    ("path", "index"), UNIT_TESTS, ids=[f"{path.stem}-{index}" for path, index in UNIT_TESTS]
)
def test_promtool_unit_tests_pass(path: Path, index: int, tmp_path: Path) -> None:
    """Each test group of prometheus/tests/ on its own: a copy of its file with that group alone, rule files
    made absolute. promtool runs every group on its own series and clock, so this is the file's own run,
    one group per test (parallel workers take them apart: the file as a whole took up to 40 s)."""
    document = yaml.safe_load(path.read_text())
    document["rule_files"] = [str((path.parent / name).resolve()) for name in document["rule_files"]]
    document["tests"] = [document["tests"][index]]
    single = tmp_path / path.name
    single.write_text(yaml.safe_dump(document))
    result = run_tool(require_tool("promtool"), "test", "rules", str(single))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_unit_test_file_has_its_groups_run() -> None:
    assert UNIT_TEST_FILES, "no promtool unit test files found"
    assert {path for path, _ in UNIT_TESTS} == set(UNIT_TEST_FILES), "a file without test groups"


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
    alertmanager = yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text())
    grouped_by = set(alertmanager["route"]["group_by"])
    for name, rule in rules.items():
        annotations = rule["annotations"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        # A summary is shared by every alert of an Alertmanager group: it may name only grouped labels.
        named = re.findall(r"{{ \$labels\.(\w+) }}", annotations["summary"])
        summary_labels = set(named)
        assert summary_labels <= grouped_by, f"{name}: summary names labels that are not grouped by"
        assert annotations["summary"].count("{{") == len(named), f"{name}: summary may only name labels"
        assert "{{" in annotations["description"], f"{name}: description must be templated"
        if name in ("CensusExporterApiDown", "CensusExporterDataStale"):
            # One exporter serves several workspaces: say which one in every notification.
            assert summary_labels == {"workspace"}, f"{name}: summary must name the workspace"
            assert "$labels.workspace" in annotations["description"], f"{name}: description lacks workspace"
        if name.startswith("CensusSync"):
            for label in ("$labels.label", "$labels.sync_id", "$labels.workspace"):
                assert label in annotations["description"], f"{name} description lacks {label}"
            assert "census_sync_paused == 1" in rule["expr"], f"{name} must not page for paused syncs"
        assert annotations["runbook_url"].endswith(f"docs/runbook.md#{name.lower()}")
        assert name.lower() in anchors, f"docs/runbook.md has no section for {name}"
        # The plain rules know no Grafana: the mixin's grafanaUrl adds the link (see the next test).
        assert "dashboard_url" not in annotations, f"{name}: a dashboard link without a Grafana URL"
        # Counters reset on restart: an alert reads one only through increase(), which handles the reset,
        # or, in CensusSyncRunFailed, as a count compared with its own highest while CensusSyncFailed fired
        # (a reset only lowers it, so it can hide a page there but never raise a false one).
        raw = "max without (status) (census_sync_runs_total" if name == "CensusSyncRunFailed" else "\0"
        assert rule["expr"].count("census_sync_runs_total") == rule["expr"].count(
            "increase(census_sync_runs_total"
        ) + rule["expr"].count(raw), f"{name} reads a counter without increase()"


def test_alert_dashboard_links_follow_the_contract() -> None:
    """With a Grafana URL, every alert links to the dashboard that exists, narrowed by the dashboard's own
    variables to what the alert is about: its workspace, and its sync for a per-sync alert."""
    dashboard = json.loads((REPO / "grafana" / "census-sync-runs.json").read_text())
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"workspace", "sync"} <= variables
    board = f"https://grafana.acme.test/d/{dashboard['uid']}/census-sync-runs"
    rules = mixin.alert_rules(mixin.render(grafanaUrl="https://grafana.acme.test")["alerts"])
    assert sorted(rules) == sorted(ALERTS)
    for name, rule in rules.items():
        link = rule["annotations"]["dashboard_url"]
        workspace = "var-workspace={{ $labels.workspace | urlquery }}"
        sync = "&var-sync={{ $labels.label | urlquery }}"
        if name.startswith("CensusSync"):
            assert link == f"{board}?{workspace}{sync}", name
        elif "$labels.workspace" in rule["annotations"]["summary"] + rule["annotations"]["description"]:
            assert link == f"{board}?{workspace}", name
        else:
            assert link == board, name


def test_example_inhibition_stays_within_one_workspace() -> None:
    """An alert of one workspace must not inhibit another workspace's alert in the example configuration."""
    config = yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text())
    assert config["inhibit_rules"]
    for rule in config["inhibit_rules"]:
        assert {"workspace", "instance"} <= set(rule["equal"]), rule


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
    shipped = [
        rule
        for name in ("rules.yaml", "alerts.yaml")
        for group in yaml.safe_load((REPO / "prometheus" / name).read_text())["groups"]
        for rule in group["rules"]
    ]
    assert len(rules) == len(shipped) > len(ALERTS)
    assert {rule["name"]: rule["health"] for rule in rules} == {rule["name"]: "ok" for rule in rules}
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} == set(ALERTS)


TIME_DIVISOR = 30  # 15 minutes of production time pass in 30 seconds of test


def readme_scrape_job(target: str) -> dict[str, Any]:
    """The scrape job the README tells users to add, with only its target address replaced."""
    readme = (REPO / "README.md").read_text()
    configs = [
        yaml.safe_load(block)
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
        if "scrape_configs:" in block
    ]
    assert len(configs) == 1, "README.md should show exactly one scrape configuration"
    (job,) = configs[0]["scrape_configs"]
    (static,) = job["static_configs"]
    assert len(static["targets"]) == 1
    static["targets"] = [target]
    return dict(job)


def seconds(duration: str) -> int:
    amount, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(amount) * {"s": 1, "m": 60, "h": 3600}[unit]


def rules_with_shorter_for(directory: Path) -> tuple[list[Path], int]:
    """The shipped rule files with every alert's ``for:`` divided by TIME_DIVISOR, nothing else changed;
    and the longest scaled ``for:`` in seconds."""
    alerts = yaml.safe_load((REPO / "prometheus" / "alerts.yaml").read_text())
    scaled_for = []
    for group in alerts["groups"]:
        for rule in group["rules"]:
            scaled_for.append(seconds(rule["for"]) // TIME_DIVISOR)
            rule["for"] = f"{scaled_for[-1]}s"
    scaled = directory / "alerts-shorter-for.yaml"
    scaled.write_text(yaml.safe_dump(alerts))
    return [REPO / "prometheus" / "rules.yaml", scaled], max(scaled_for)


def evaluated_after(prometheus: Prometheus, moment: datetime) -> bool:
    """Whether every rule group of ``prometheus`` was last evaluated after ``moment``."""
    groups = prometheus.api("rules")["groups"]
    # Prometheus reports nanoseconds; datetime parses at most microseconds.
    times = [
        datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", group["lastEvaluation"])) for group in groups
    ]
    return bool(groups) and all(when > moment for when in times)


def test_readme_scrape_job_with_shipped_rules_alerts_only_when_the_exporter_is_down(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    """A real Prometheus with the README's own scrape job and the shipped rules: against a healthy
    exporter no alert fires, nor is even pending, for longer than the longest ``for:``; once the exporter
    stops, CensusExporterDown fires for its target.

    Honest within a CI budget: the longest ``for:`` is 15 minutes, so time runs TIME_DIVISOR (30) times
    faster: Prometheus loads a copy of alerts.yaml whose every ``for:`` is divided by 30 (expressions and
    thresholds untouched), and the README's scrape_interval (60 s) is divided by 30 too, so the alert sees
    the same number of scrapes as in production. Everything else in the README's job is used as written,
    its job name above all. An alert that would fire in production is pending from its first evaluation,
    so "ALERTS is empty" at every poll holds for the unscaled rules too. The unscaled rules are replayed by
    promtool in test_readme_scrape_job_pages_when_the_exporter_is_down.
    """
    workspace = SimulatedWorkspace()
    for sync_id in (1, 2, 3):
        workspace.add_sync(sync_id, label=f"Healthy {sync_id}")
        workspace.add_run(sync_id, "completed")
    harness = harness_factory(workspace, start=True)
    harness.refresh()
    rule_files, longest_for = rules_with_shorter_for(tmp_path)
    job = readme_scrape_job(f"127.0.0.1:{harness.exporter.port}")
    job["scrape_interval"] = f"{seconds(job['scrape_interval']) // TIME_DIVISOR}s"
    if "scrape_timeout" in job:  # scaled alike: Prometheus refuses a timeout longer than the interval
        job["scrape_timeout"] = f"{max(1, seconds(job['scrape_timeout']) // TIME_DIVISOR)}s"
    prometheus = Prometheus(tmp_path, harness.exporter.port, scrape_config=job, rule_files=rule_files)
    try:
        wait_for(
            lambda: prometheus.query("census:sync_info:latest"),
            timeout=30,
            what=lambda: f"a scrape of the README's job, and the rules over it\n{prometheus.proc.output()}",
        )
        # Rules evaluated before the first scrape may have seen no exporter; watch from the next evaluation.
        scraped = datetime.now(UTC)
        wait_for(
            lambda: evaluated_after(prometheus, scraped), timeout=30, what="rules evaluated after the scrape"
        )
        deadline = time.monotonic() + longest_for + 5
        while time.monotonic() < deadline:
            assert prometheus.query("ALERTS") == [], "an alert is pending or firing for a healthy exporter"
            time.sleep(1)
        (target,) = prometheus.api("targets")["activeTargets"]
        assert (target["labels"]["job"], target["health"]) == (job["job_name"], "up")

        harness.exporter.close()

        def exporter_down_firing() -> list[dict[str, Any]]:
            return prometheus.query('ALERTS{alertname="CensusExporterDown", alertstate="firing"}')

        (alert,) = wait_for(exporter_down_firing, timeout=60, interval=0.5, what="CensusExporterDown firing")
        assert alert["metric"]["job"] == job["job_name"]
        assert alert["metric"]["instance"] == f"127.0.0.1:{harness.exporter.port}"
    finally:
        prometheus.proc.stop()


def test_readme_scrape_job_pages_when_the_exporter_is_down(tmp_path: Path) -> None:
    """CensusExporterDown fires for a stopped exporter scraped by the README's job (promtool: the real
    Prometheus would need 5 minutes of `for:` plus a 60 s scrape interval)."""
    job_name = readme_scrape_job("exporter:10049")["job_name"]
    target = f'job="{job_name}",instance="exporter:10049"'
    tests = {
        "rule_files": [str(path) for path in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{target}}}", "values": "1 1 0x10"},
                    {"series": f'census_exporter_build_info{{{target},version="1"}}', "values": "1 1"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "CensusExporterDown", "exp_alerts": []},
                    {
                        "eval_time": "9m",
                        "alertname": "CensusExporterDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": job_name,
                                    "instance": "exporter:10049",
                                },
                                "exp_annotations": {
                                    "summary": "census-exporter is down or not scraped.",
                                    "description": "Prometheus cannot scrape census-exporter exporter:10049: "
                                    "Census syncs are not being monitored.",
                                    "runbook_url": "https://github.com/census-exporter/census-exporter/blob/main"
                                    "/docs/runbook.md#censusexporterdown",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "readme_job_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = run_tool(require_tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
