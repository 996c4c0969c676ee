"""The documentation tells the truth: its PromQL parses and the metrics it names exist."""

from __future__ import annotations

import base64
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import yaml

from census_exporter.cli.assembly import parse_config
from census_exporter.config import Exposition
from census_exporter.demo import SimulatedOrganization, reference_workspace
from census_exporter.demo.organization import base_url
from census_exporter.exporter import Exporter
from tests.conftest import HarnessFactory, parse_scrape, require_tool, wait_for
from tests.stack import REPO, promtool_check_expressions, run_tool

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def promql_examples() -> list[tuple[str, str]]:
    """(file, query) for every query in a ```promql block; comment lines separate queries."""
    examples = []
    for path in DOCS:
        for block in re.findall(r"```promql\n(.*?)```", path.read_text(), re.DOTALL):
            current: list[str] = []
            for line in [*block.splitlines(), "#"]:
                if line.lstrip().startswith("#"):
                    if current:
                        examples.append((path.name, "\n".join(current)))
                    current = []
                elif line.strip():
                    current.append(line)
    return examples


def test_every_promql_example_parses(tmp_path: Path) -> None:
    examples = promql_examples()
    assert len(examples) >= 4
    result = promtool_check_expressions([query for _, query in examples], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def discovery_metric_names(directory: Path) -> set[str]:
    """The metric names an exporter with an ``auto: true`` entry exposes (discovery's own families)."""
    organization = SimulatedOrganization(pat="secret-token:docs-pat")
    organization.add_workspace("docs", group_id="docs_group")
    server = organization.serve()
    config_file = directory / "workspaces.yaml"
    config_file.write_text(
        f"workspaces:\n  - auto: true\n    api_version: v2\n    api_url: {base_url(server, 'v2')}\n"
        "    token_env: PAT\n"
    )
    exporter = Exporter(
        parse_config(
            ["--config.file", str(config_file), "--web.listen-address", "127.0.0.1:0"],
            {"PAT": organization.pat},
        )
    )
    try:
        exporter.start()
        url = f"http://127.0.0.1:{exporter.port}"
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, what="discovery's first listing")
        return {name for name, _ in parse_scrape(httpx.get(f"{url}/metrics").text).samples}
    finally:
        exporter.close()
        server.close()


def web_config_metric_names(harness_factory: HarnessFactory, directory: Path) -> set[str]:
    """The metrics a --web.config.file with basic auth adds."""
    hashed = bcrypt.hashpw(b"docs", bcrypt.gensalt(rounds=4)).decode()
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": {"docs": hashed}}))
    harness = harness_factory(web_config_file=str(path))
    authorization = "Basic " + base64.b64encode(b"docs:docs").decode()
    return {name for name, _ in harness.scrape(Authorization=authorization).samples}


def webhook_metric_names(harness_factory: HarnessFactory) -> set[str]:
    """The metric names an exporter with the webhook receiver exposes once it took an event."""
    from census_exporter.config import TokenSource
    from census_exporter.webhooks.signature import sign

    harness = harness_factory(
        reference_workspace(),
        webhook_listen=("127.0.0.1", 0),
        webhook_secrets=(TokenSource(value="docs-secret"),),
    )
    assert harness.exporter.webhooks is not None
    harness.exporter.webhooks.start()
    harness.refresh()
    body = b'{"workspace_id": 1, "sync_id": 52, "sync_run_id": 94, "event": "sync.success"}'
    answer = httpx.post(
        f"http://127.0.0.1:{harness.exporter.webhooks.port}/webhooks/census/default",
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": sign(body, "docs-secret")},
    )
    assert answer.status_code == 202
    return {name for name, _ in harness.scrape().samples}


def test_every_metric_the_docs_name_exists(harness_factory: HarnessFactory, tmp_path: Path) -> None:
    # Every documented series present: finished runs (52), a scheduled one (53), one still running (54);
    # with the default exposition settings and with every optional series.
    exposed: set[str] = set()
    for exposition in (Exposition(), Exposition.everything()):
        workspace = reference_workspace()
        workspace.add_sync(53, label="Scheduled")
        workspace.add_run(53, "completed", scheduled=True)
        workspace.add_sync(54, label="Running")
        workspace.add_run(54, "working")
        exposed |= {name for name, _ in harness_factory(workspace, exposition=exposition).scrape().samples}
    exposed |= discovery_metric_names(tmp_path)
    exposed |= web_config_metric_names(harness_factory, tmp_path)
    exposed |= webhook_metric_names(harness_factory)
    exposed |= {re.sub(r"_(bucket|count|sum)$", "", name) for name in exposed}
    not_metrics = {"census_exporter"}  # the Python package
    for path in DOCS:
        # Whole names only: "census_sync_records_*_total" is a pattern, not a metric.
        named = set(re.findall(r"\bcensus_[a-z0-9_]*[a-z0-9]\b(?!_\*)", path.read_text())) - not_metrics
        unknown = named - exposed
        assert not unknown, f"{path.name} names metrics the exporter does not expose: {sorted(unknown)}"


HELM_DOCS = [*DOCS, REPO / "helm" / "census-exporter" / "README.md"]
NOT_VALUE_PATHS = re.compile(r"\.(py|ya?ml|json|md|txt|toml|com|org|io|tpl)$")


HELM_CONTEXT = re.compile(r"helm|chart|values?\b|--set", re.IGNORECASE)


def helm_value_paths(text: str, top_level_keys: Collection[str] = ()) -> set[str]:
    """Dotted Helm value paths a text names: `a.b.c` or `a.b=value` in backticks, and `--set a.b=value`.

    A path counts when it starts with a top-level key of values.yaml, or stands on a line that speaks of Helm
    (the chart, values, --set): elsewhere `a.b` is a JSON field (`pagination.total_records`) or the like.
    """
    path = r"[a-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_]+)+"  # values are lowerCamelCase; Class.attr is not one
    named: set[str] = set()
    for line in text.splitlines():
        found = set(re.findall(rf"`({path})(?:=[^`]*)?`", line)) | set(
            re.findall(rf"--set[ =]({path})=", line)
        )
        if HELM_CONTEXT.search(line):
            named |= found
        else:
            named |= {name for name in found if name.split(".")[0] in top_level_keys}
    return {name for name in named if not NOT_VALUE_PATHS.search(name)}


def value_path_exists(values: Any, path: str) -> bool:
    """Whether ``path`` walks through values.yaml; a free-form map (``labels: {}``) accepts any key."""
    node = values
    for key in path.split("."):
        if not isinstance(node, dict):
            return False
        if key not in node:
            return node == {}
        node = node[key]
    return True


def test_every_helm_value_the_docs_name_exists() -> None:
    values = yaml.safe_load((REPO / "helm" / "census-exporter" / "values.yaml").read_text())
    checked = 0
    for doc in HELM_DOCS:
        for path in sorted(helm_value_paths(doc.read_text(), values.keys())):
            checked += 1
            assert value_path_exists(values, path), f"{doc.name} names Helm value {path}, not in values.yaml"
    assert checked >= 20


def test_value_path_check_catches_a_wrong_name() -> None:
    values = {"grafanaDashboard": {"enabled": False}, "prometheusRule": {"labels": {}}}
    assert helm_value_paths("the chart (`grafana.dashboard.enabled`) `app.getcensus.com` `cli.py`") == {
        "grafana.dashboard.enabled"
    }
    assert not value_path_exists(values, "grafana.dashboard.enabled")
    assert value_path_exists(values, "grafanaDashboard.enabled")
    assert value_path_exists(values, "prometheusRule.labels.release")


def readme_query(containing: str) -> str:
    """The one README example query that contains ``containing``."""
    (query,) = [query for name, query in promql_examples() if name == "README.md" and containing in query]
    return query


def test_readme_queries_survive_two_jobs_and_syncs_that_processed_nothing(tmp_path: Path) -> None:
    """promtool evaluates the README's join and ratio over series shaped like a real scrape: two jobs
    scraping one exporter (an HA setup) must not break the join, and a sync that processed no records
    must give no result rather than NaN."""
    names_query = readme_query("group_left (label, destination)")
    share_query = readme_query("census_sync_records_failed_total")
    workspace_share_query = readme_query("census_workspace_records_failed_total")
    jobs = ["census", "census-ha"]

    def series(name: str, sync_id: str, values: str, **labels: str) -> dict[str, str]:
        extra = "".join(f',{key}="{value}"' for key, value in labels.items())
        return {
            "series": f'{name}{{instance="e:10049",workspace="w",sync_id="{sync_id}"{extra}}}',
            "values": values,
        }

    input_series = []
    for job in jobs:
        input_series += [
            series("census_sync_last_run_status", "1", "1x60", job=job, status="failed"),
            series("census_sync_paused", "1", "0x60", job=job),
            series("census_sync_info", "1", "1x60", job=job, label="Leads", destination="Salesforce"),
            series("census_sync_records_failed_total", "1", "0+1x60", job=job),
            series("census_sync_records_processed_total", "1", "0+10x60", job=job),
            series("census_sync_records_failed_total", "2", "0x60", job=job),
            series("census_sync_records_processed_total", "2", "0x60", job=job),
        ]
        for workspace, failed, processed in (("w", "0+1x60", "0+10x60"), ("idle", "0x60", "0x60")):
            input_series += [
                {
                    "series": f'{name}{{job="{job}",instance="e:10049",workspace="{workspace}"}}',
                    "values": values,
                }
                for name, values in (
                    ("census_workspace_records_failed_total", failed),
                    ("census_workspace_records_processed_total", processed),
                )
            ]
    labels = 'instance="e:10049",workspace="w",sync_id="1"'
    names = 'label="Leads",destination="Salesforce"'
    tests = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "promql_expr_test": [
                    {
                        "expr": names_query,
                        "eval_time": "60m",
                        "exp_samples": [
                            {
                                "labels": f'{{job="{job}",{labels},status="failed",{names}}}',
                                "value": 1,
                            }
                            for job in jobs
                        ],
                    },
                    {
                        "expr": share_query,
                        "eval_time": "60m",
                        "exp_samples": [
                            {"labels": f'{{job="{job}",{labels}}}', "value": 0.1} for job in jobs
                        ],
                    },
                    {
                        "expr": workspace_share_query,
                        "eval_time": "60m",
                        "exp_samples": [
                            {"labels": f'{{job="{job}",instance="e:10049",workspace="w"}}', "value": 0.1}
                            for job in jobs
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "readme_queries_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = run_tool(require_tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_says_the_token_not_the_workspace_flag_selects_the_workspace() -> None:
    readme = (REPO / "README.md").read_text()
    first_use = readme.index("--census.workspace")
    # The explanation follows the first example that uses the flag, before the next topic.
    explanation = readme[first_use : readme.index("For an EU workspace", first_use)]
    assert "The token selects the Census workspace" in explanation
    assert "only sets the value of the `workspace` label" in explanation


def test_readme_per_sync_cost_is_the_one_docs_metrics_states() -> None:
    """Issue 21: the README said 12 series and 1.2 KB per sync while docs/metrics.md said 13 and 1.3."""
    readme = " ".join((REPO / "README.md").read_text().split())
    metrics = " ".join((REPO / "docs" / "metrics.md").read_text().split())
    stated = re.search(r"about (\d+) series and ([\d.]+) KB per sync", readme)
    assert stated, "README no longer states the per-sync cost"
    documented = re.search(r"about (\d+) series \([^)]*\), about ([\d.]+) KB per sync", metrics)
    assert documented, "docs/metrics.md no longer states the per-sync cost"
    assert stated.groups() == documented.groups()


def test_the_example_prometheus_comment_states_the_scrape_wait_the_server_uses() -> None:
    from census_exporter.http.scrape import scrape_budget

    config = (REPO / "prometheus" / "prometheus.yml").read_text()
    timeout = yaml.safe_load(config)["scrape_configs"][0]["scrape_timeout"]
    assert timeout.endswith("s")
    waits = scrape_budget(timeout.removesuffix("s"))
    comments = [line.strip().lstrip("# ") for line in config.splitlines() if line.strip().startswith("#")]
    comment = " ".join(comments)
    assert f"{waits:g} s here" in comment, comment
