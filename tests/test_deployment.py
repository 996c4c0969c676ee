"""Deployment artefacts with the real tools: hadolint, helm, kubernetes-validate, promtool, docker-compose.

The image build-and-run smoke test needs a Docker daemon and root; it is scripts/docker-smoke-test, run by
`make docker-smoke` from .ci/run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from census_exporter.cli.flags import build_parser
from tests import mixin
from tests.conftest import require_tool
from tests.helm import CHART, CRD_KINDS, VALUE_SETS, by_kind, helm, render, render_notes, validate_offline
from tests.stack import REPO, promtool_check_groups, run_tool

# ------------------------------------------------------------------ Dockerfile


def test_hadolint_is_clean() -> None:
    result = run_tool(require_tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_the_contract() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in text
    assert text.count("FROM ${PYTHON_IMAGE}") == 2, "multi-stage: builder and runtime"
    assert "pip wheel" in text and "--no-cache-dir" in text
    assert "USER 10049:10049" in text
    assert "EXPOSE 10049" in text
    assert 'ENTRYPOINT ["census-exporter"]' in text
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert 'CMD ["python", "-m", "census_exporter.healthcheck"]' in instructions
    assert "curl" not in instructions
    assert "org.opencontainers.image.source" in text
    assert (REPO / ".dockerignore").exists()


# ------------------------------------------------------------------ Helm


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str) -> None:
    result = helm("lint", "--strict", str(CHART), *VALUE_SETS[name])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_manifests_validate_offline(name: str, tmp_path: Path) -> None:
    documents = render(*VALUE_SETS[name])
    output = validate_offline(documents, tmp_path)
    # The tool ships no schemas for prometheus-operator CRDs: it may only say so, for those kinds alone.
    warnings = [line for line in output.splitlines() if line.startswith("WARN")]
    crds = {doc["kind"] for doc in documents if doc["kind"] in CRD_KINDS}
    assert len(warnings) == len(crds) and all(any(k in w for k in crds) for w in warnings), output


def test_deployment_is_hardened_by_default() -> None:
    documents = render()
    assert {doc["kind"] for doc in documents} == {"ServiceAccount", "Service", "Deployment"}
    deployment = by_kind(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--census.token-file=/var/run/secrets/census/token" in container["args"]
    volume = next(v for v in pod["volumes"] if v["name"] == "census-token")
    assert volume["secret"]["secretName"] == "census-census-exporter"


def test_token_from_existing_secret_or_chart_made_secret() -> None:
    existing = render(*VALUE_SETS["existing-secret"])
    volume = next(
        v
        for v in by_kind(existing, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "census-token"
    )
    assert volume["secret"] == {"secretName": "census-api", "items": [{"key": "api-token", "path": "token"}]}
    assert not [doc for doc in existing if doc["kind"] == "Secret"]
    made = render("--set", "census.token=secret-token:abc")
    secret = by_kind(made, "Secret")
    assert secret["data"]["token"] == "c2VjcmV0LXRva2VuOmFiYw=="
    assert "checksum/secret" in by_kind(made, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_notes_tell_how_to_reach_it_and_warn_without_a_token(tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert "kubectl -n monitoring port-forward svc/census-census-exporter 10049" in notes
    assert "WARNING: no API token configured" in notes
    assert "create secret generic census-census-exporter" in notes
    configured = render_notes(tmp_path / "b", *VALUE_SETS["existing-secret"])
    assert "WARNING" not in configured


def test_values_schema_rejects_wrong_values() -> None:
    for bad in (
        "replicaCount=two",
        "census.region=au",
        "service.port=70000",
        "log.level=loud",
        "census.tokn=typo",
        "prometheusRule.alerts.CensusSyncFailed.severity=page",
        "serviceMonitor.interval=soon",
        "image.digest=latest",
        "census.concurrency=100000",
        "census.durationHistogram=bucket",
        "census.recordTotals=off",
        "census.runDetails=maybe",
        "census.apiUrl=http://user:secret@census.example/api/v1",
        "prometheusRule.grafanaUrl=grafana.acme.test",
    ):
        result = helm("template", "census", str(CHART), "--set", bad)
        assert result.returncode != 0, f"accepted {bad}"
        assert "schema" in result.stderr, result.stderr


def test_values_schema_ranges_are_the_cli_ranges() -> None:
    """A value the schema admits must not crash-loop the pod: every numeric flag the chart passes from a value
    has that value's schema minimum and maximum equal to the flag's own range."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    settings = {setting.flag: setting for setting in build_parser().settings}
    template = (CHART / "templates" / "deployment.yaml").read_text()
    checked = 0
    for flag, path in re.findall(r"- (--[\w.-]+)=\{\{ (?:int64 )?\.Values\.([\w.]+) \}\}", template):
        low = getattr(settings[flag].convert, "low", None)
        if low is None:
            continue
        node = schema
        for key in path.split("."):
            node = node["properties"][key]
        assert (node.get("minimum"), node.get("maximum")) == (low, settings[flag].convert.high), path
        checked += 1
    assert checked >= 5


def test_values_schema_choices_are_the_cli_choices() -> None:
    """A flag the chart passes from a value, if it has a fixed set of choices, admits just the schema's."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    settings = {setting.flag: setting for setting in build_parser().settings}
    template = (CHART / "templates" / "deployment.yaml").read_text()
    checked = 0
    for flag, path in re.findall(r"- (--[\w.-]+)=\{\{ \.Values\.([\w.]+) \}\}", template):
        choices = getattr(settings[flag].convert, "values", None)
        if choices is None:
            continue
        node = schema
        for key in path.split("."):
            node = node["properties"][key]
        assert node["enum"] == list(choices), path
        checked += 1
    assert checked >= 3  # region, duration histogram, record totals


def test_exposition_values_become_flags() -> None:
    deployment = by_kind(render(), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--census.duration-histogram=workspace" in args and "--census.record-totals=workspace" in args
    assert "--census.run-details" not in args
    chosen = ("census.durationHistogram=off", "census.recordTotals=sync", "census.runDetails=true")
    deployment = by_kind(render(*(f"--set={value}" for value in chosen)), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--census.duration-histogram=off", "--census.record-totals=sync", "--census.run-details"} <= set(
        args
    )


def rule_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def test_prometheus_rule_matches_the_project_rules_by_default() -> None:
    documents = render("--set", "prometheusRule.enabled=true")
    rendered = by_kind(documents, "PrometheusRule")["spec"]["groups"]
    expected = rule_groups(REPO / "prometheus" / "rules.yaml") + rule_groups(
        REPO / "prometheus" / "alerts.yaml"
    )
    assert rendered == expected
    # No prometheusRule.grafanaUrl: no dashboard_url (the chart's __GRAFANA_URL__ placeholder is dropped).
    assert "dashboard_url" not in json.dumps(rendered) and "__GRAFANA_URL__" not in json.dumps(rendered)


def test_prometheus_rule_links_as_the_mixin_does() -> None:
    """prometheusRule.grafanaUrl gives each alert the dashboard_url the mixin gives it for that URL."""
    documents = render(
        "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.grafanaUrl=https://g.acme.test/"
    )
    rendered = {
        r["alert"]: r
        for g in by_kind(documents, "PrometheusRule")["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    expected = mixin.alert_rules(mixin.render(grafanaUrl="https://g.acme.test")["alerts"])
    assert rendered == expected


def test_prometheus_rule_overrides(tmp_path: Path) -> None:
    documents = render(*VALUE_SETS["all-features"])
    rule = by_kind(documents, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "CensusSyncRecordsInvalid" not in alerts  # disabled
    failing = alerts["CensusSyncRecordsFailing"]
    assert "records_failed:ratio > 0.25" in failing["expr"] and "0.10" not in failing["expr"]
    assert failing["labels"] == {"severity": "critical", "team": "data-platform"}
    stale = alerts["CensusSyncNotSucceededRecently"]
    assert stale["for"] == "30m" and "* 0 + 172800)" in stale["expr"]
    assert failing["annotations"]["dashboard_url"].startswith("https://grafana.acme.test/d/census-sync-runs/")
    assert (
        failing["annotations"]["runbook_url"]
        == "https://wiki.acme.test/census-runbook#censussyncrecordsfailing"
    )
    # The overridden rules are still valid Prometheus rules.
    result = promtool_check_groups(rule["spec"]["groups"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_and_network_policy() -> None:
    documents = render(*VALUE_SETS["all-features"])
    monitor = by_kind(documents, "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "http" and endpoint["interval"] == "30s" and endpoint["scrapeTimeout"] == "20s"
    assert endpoint["relabelings"][0]["targetLabel"] == "node"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    service = next(
        doc for doc in documents if doc["kind"] == "Service" and "webhooks" not in doc["metadata"]["name"]
    )
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    policy = by_kind(documents, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {53, 443}


def test_dashboard_configmap_matches_the_dashboard() -> None:
    documents = render(*VALUE_SETS["all-features"])
    config_map = by_kind(documents, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Census"}
    assert (
        config_map["data"]["census-sync-runs.json"]
        == (REPO / "grafana" / "census-sync-runs.json").read_text()
    )
    custom = render(
        "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.sidecarLabel=dashboards"
    )
    assert by_kind(custom, "ConfigMap")["metadata"]["labels"]["dashboards"] == "1"


@pytest.mark.parametrize(
    ("copy", "original"),
    [
        ("files/rules.yaml", "prometheus/rules.yaml"),
        ("files/census-sync-runs.json", "grafana/census-sync-runs.json"),
    ],
)
def test_chart_copies_have_not_drifted(copy: str, original: str) -> None:
    """files/alerts.yaml differs by its __GRAFANA_URL__ links: tests/test_mixin.py checks every copy."""
    assert (CHART / copy).read_bytes() == (REPO / original).read_bytes(), f"run `make mixin` ({copy})"


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in ("prometheusRule.alerts",):
            keys.extend(leaf_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    undocumented = [
        key
        for key in leaf_keys(values)
        if f"`{key}`" not in readme
        and f"`{key}.<" not in readme
        and not any(f"`{parent}`" in readme for parent in _parents(key))
        and not any(key in cell for cell in readme.split("|") if "," in cell)
    ]
    assert not undocumented, undocumented
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"])


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


# ------------------------------------------------------------------ compose


def test_compose_stack_is_valid(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"census-simulator", "census-exporter", "prometheus", "alertmanager", "grafana"}
    assert "--config.file=/etc/census-exporter/workspaces.yaml" in services["census-exporter"]["command"]
    # Grafana runs with anonymous admin access: nothing may be published beyond loopback.
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{source} is mounted but missing"
    mounted = next(
        v for v in services["prometheus"]["volumes"] if v.endswith("/etc/prometheus/prometheus.yml:ro")
    )
    config = REPO / mounted.split(":")[0]
    result = run_tool(require_tool("promtool"), "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout
    checked = run_tool(
        require_tool("docker-compose"), "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


COMPOSE_WORKSPACES = REPO / "deploy" / "compose" / "workspaces.yaml"


def test_compose_runs_the_simulator_from_the_exporter_image_hardened_and_unpublished() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    simulator, exporter = services["census-simulator"], services["census-exporter"]
    assert simulator["image"] == exporter["image"] and simulator["build"] == exporter["build"] == "."
    assert simulator["entrypoint"] == [
        "python",
        "-m",
        "census_exporter.demo",
        "--listen-address",
        "0.0.0.0:8080",
    ]
    assert "ports" not in simulator, "the simulator is for the other containers only"
    assert "census-simulator" in exporter["depends_on"]
    for service in (simulator, exporter):
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert service["security_opt"] == ["no-new-privileges:true"]
    # The image's health check asks the exporter's port, where the simulator does not listen.
    assert "8080" in " ".join(simulator["healthcheck"]["test"])


def test_compose_workspaces_file_parses_and_matches_the_stack() -> None:
    from census_exporter.demo import DEMO_MARKETING_API_KEY, DEMO_ORGANIZATION_PAT, DEMO_SALES_GROUP_ID
    from census_exporter.workspaces import parse_workspaces_file

    exporter = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["census-exporter"]
    mounted = f"./{COMPOSE_WORKSPACES.relative_to(REPO)}:/etc/census-exporter/workspaces.yaml:ro"
    assert mounted in exporter["volumes"]
    parsed = parse_workspaces_file(COMPOSE_WORKSPACES.read_text(), str(COMPOSE_WORKSPACES))
    assert parsed.discoveries == ()
    workspaces = {workspace.name: workspace for workspace in parsed.workspaces}
    assert set(workspaces) == {"marketing", "sales"}
    marketing, sales = workspaces["marketing"], workspaces["sales"]
    assert (marketing.api_version, marketing.api_url) == ("v1", "http://census-simulator:8080/api/v1")
    assert (sales.api_version, sales.api_url) == ("v2", "http://census-simulator:8080/api/v2")
    assert sales.group_id == DEMO_SALES_GROUP_ID
    # Each workspace reads its token from a variable the exporter service sets to the simulator's token.
    environment = exporter["environment"]
    assert marketing.token.env is not None and sales.token.env is not None
    assert environment[marketing.token.env] == DEMO_MARKETING_API_KEY
    assert environment[sales.token.env] == DEMO_ORGANIZATION_PAT


# ------------------------------------------------------------------ Helm nits (issue 21)


def test_a_token_beside_an_existing_secret_is_refused_not_ignored() -> None:
    values = ["--set", "census.token=secret-token:unused", "--set", "census.existingSecret=census-api"]
    result = helm("template", "census", str(CHART), *values)
    assert result.returncode != 0
    assert "census.token and census.existingSecret are both set" in result.stderr
    assert "secret-token:" not in result.stderr, "a refusal must not echo a token"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["--set", "census.existingSecret=s"], None),
        (["--set", "census.existingSecret=s", "--set", "podAnnotations.team=data"], {"team": "data"}),
        (["--set", "census.token=t", "--set", "podAnnotations.team=d"], {"team", "checksum/secret"}),
    ],
)
def test_pod_annotations_are_a_map_or_absent_never_null(values: list[str], expected: Any) -> None:
    result = helm("template", "census", str(CHART), *values)
    assert result.returncode == 0, result.stderr
    assert "annotations: null" not in result.stdout and not re.search(r"annotations:\n\s*\n", result.stdout)
    pod = by_kind([doc for doc in yaml.safe_load_all(result.stdout) if doc], "Deployment")["spec"]["template"]
    if expected is None:
        assert "annotations" not in pod["metadata"]
    elif isinstance(expected, dict):
        assert pod["metadata"]["annotations"] == expected
    else:
        assert set(pod["metadata"]["annotations"]) == expected
