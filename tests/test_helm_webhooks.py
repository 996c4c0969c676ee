"""The chart's webhook receiver, its Service, Ingress and NetworkPolicy rule, rendered by the real helm and
validated by kubernetes-validate; the rendered workspaces file is read by the exporter's own parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from census_exporter.workspaces import parse_workspaces_file
from tests.helm import CHART, assert_lints_and_validates, by_kind, helm, pod_spec, render

INGRESS_PEERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
MONITORING_PEERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
SECRETS = [{"name": "census-webhook", "key": "secret"}, {"name": "census-webhook-next", "key": "secret"}]


def one_workspace(**webhooks: Any) -> list[str]:
    values = {"enabled": True, "existingSecrets": SECRETS, **webhooks}
    return ["--set", "census.token=secret-token:x", "--set-json", f"webhooks={json.dumps(values)}"]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in documents if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, got {len(matches)}"
    return matches[0]


def projected_files(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """File name in the webhook-secrets volume -> (Secret, key)."""
    volume = next(v for v in spec["volumes"] if v["name"] == "webhook-secrets")
    assert volume["projected"]["defaultMode"] == 0o400
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_off_by_default_nothing_of_the_receiver_renders() -> None:
    documents = render("--set", "networkPolicy.enabled=true")
    assert not [doc for doc in documents if doc["kind"] == "Ingress"]
    assert [doc["metadata"]["name"] for doc in documents if doc["kind"] == "Service"] == [
        "census-census-exporter"
    ]
    container = pod_spec(documents)["containers"][0]
    assert not [arg for arg in container["args"] if "webhook" in arg]
    assert [port["name"] for port in container["ports"]] == ["http"]
    rules = by_kind(documents, "NetworkPolicy")["spec"]["ingress"]
    assert [rule["ports"] for rule in rules] == [[{"port": "http", "protocol": "TCP"}]]


def test_one_workspace_listener_secrets_service_ingress_and_policy() -> None:
    documents = render(
        *one_workspace(
            reconcileIntervalSeconds=900,
            ingress={
                "enabled": True,
                "className": "nginx",
                "hosts": ["hooks.example.test"],
                "tls": [{"secretName": "hooks-tls", "hosts": ["hooks.example.test"]}],
            },
            networkPolicyFrom=INGRESS_PEERS,
        ),
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        f"networkPolicy.ingressFrom={json.dumps(MONITORING_PEERS)}",
    )
    spec = pod_spec(documents)
    container = spec["containers"][0]
    args = container["args"]
    assert "--web.webhook-listen-address=:10050" in args
    assert "--census.webhook-reconcile-interval=900" in args
    secret_files = next(arg for arg in args if arg.startswith("--web.webhook-secret-file="))
    paths = secret_files.partition("=")[2].split(",")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-secrets")
    assert mount["readOnly"] is True
    files = projected_files(spec)
    # Every file the exporter is told to read is in the volume, from the Secret given, in order.
    assert [f"{mount['mountPath']}/{name}" for name in files] == paths
    assert list(files.values()) == [(s["name"], s["key"]) for s in SECRETS]
    assert {"name": "webhooks", "containerPort": 10050, "protocol": "TCP"} in container["ports"]
    # No secret reaches the args' values or the environment.
    assert "env" not in container or not any("WEBHOOK" in e["name"] for e in container["env"])

    service = named(documents, "Service", "census-census-exporter-webhooks")
    assert service["spec"]["ports"] == [
        {"name": "webhooks", "port": 10050, "targetPort": "webhooks", "protocol": "TCP"}
    ]
    # The main Service does not carry the webhook port, and the webhook Service not the metrics port.
    main = named(documents, "Service", "census-census-exporter")
    assert [port["name"] for port in main["spec"]["ports"]] == ["http"]

    ingress = by_kind(documents, "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "hooks-tls", "hosts": ["hooks.example.test"]}]
    assert ingress["rules"] == [
        {
            "host": "hooks.example.test",
            "http": {
                "paths": [
                    {
                        "path": "/webhooks/census/",
                        "pathType": "Prefix",
                        "backend": {
                            "service": {
                                "name": "census-census-exporter-webhooks",
                                "port": {"name": "webhooks"},
                            }
                        },
                    }
                ]
            },
        }
    ]

    rules = by_kind(documents, "NetworkPolicy")["spec"]["ingress"]
    assert rules == [
        {"ports": [{"port": "http", "protocol": "TCP"}], "from": MONITORING_PEERS},
        {"ports": [{"port": "webhooks", "protocol": "TCP"}], "from": INGRESS_PEERS},
    ]


def test_an_ingress_without_hosts_routes_only_the_webhook_path_for_every_host() -> None:
    documents = render(*one_workspace(ingress={"enabled": True}))
    rules = by_kind(documents, "Ingress")["spec"]["rules"]
    assert len(rules) == 1 and "host" not in rules[0]
    assert [path["path"] for path in rules[0]["http"]["paths"]] == ["/webhooks/census/"]


def test_workspaces_entries_carry_their_secret_files_into_a_file_the_exporter_accepts() -> None:
    workspaces = [
        {
            "name": "marketing",
            "api_version": "v1",
            "existingSecret": {"name": "census-marketing", "key": "token"},
            "webhookSecrets": SECRETS,
        },
        {"name": "sales", "api_version": "v1", "token": "secret-token:sales"},
        {
            "auto": True,
            "api_version": "v1",
            "existingSecret": {"name": "census-org", "key": "token"},
        },
    ]
    documents = render(
        "--set-json",
        f"workspaces={json.dumps(workspaces)}",
        "--set",
        "webhooks.enabled=true",
    )
    args = pod_spec(documents)["containers"][0]["args"]
    assert "--web.webhook-listen-address=:10050" in args
    assert not [arg for arg in args if arg.startswith("--web.webhook-secret-file")]
    text = named(documents, "ConfigMap", "census-census-exporter-workspaces")["data"]["workspaces.yaml"]
    parsed = parse_workspaces_file(text, "workspaces.yaml")
    by_name = {entry.name: entry for entry in parsed.workspaces}
    secret_files = [str(location.file) for location in by_name["marketing"].webhook_secrets]
    assert secret_files == [
        "/run/secrets/census-webhooks/marketing-0",
        "/run/secrets/census-webhooks/marketing-1",
    ]
    assert by_name["sales"].webhook_secrets == ()
    files = projected_files(pod_spec(documents))
    assert files == {
        "marketing-0": ("census-webhook", "secret"),
        "marketing-1": ("census-webhook-next", "secret"),
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "census.token=x", "--set", "webhooks.enabled=true"], "set webhooks.existingSecrets"),
        (["--set", "census.token=x", "--set", "webhooks.ingress.enabled=true"], "needs webhooks.enabled"),
        (
            [
                "--set-json",
                'workspaces=[{"name":"a","api_version":"v1","token":"t"}]',
                "--set",
                "webhooks.enabled=true",
            ],
            "no workspaces entry has webhookSecrets",
        ),
        (
            [
                "--set-json",
                'workspaces=[{"name":"a","api_version":"v1","token":"t",'
                '"webhookSecrets":[{"name":"w","key":"k"}]}]',
                "--set",
                "webhooks.enabled=true",
                "--set-json",
                'webhooks.existingSecrets=[{"name":"w","key":"k"}]',
            ],
            "webhooks.existingSecrets is for one workspace",
        ),
        (
            [
                "--set-json",
                'workspaces=[{"auto":true,"api_version":"v1","token":"t",'
                '"webhookSecrets":[{"name":"w","key":"k"}]}]',
            ],
            "webhookSecrets",
        ),
        (["--set", "webhooks.reconcileIntervalSeconds=0"], "reconcileIntervalSeconds"),
        (["--set-json", 'webhooks.existingSecrets=[{"name":"w"}]'], "key"),
        (["--set", "webhooks.ingres.enabled=true"], "ingres"),
    ],
)
def test_invalid_webhook_values_fail_at_install_time(values: list[str], message: str) -> None:
    result = helm("template", "census", str(CHART), *values)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_webhook_manifests_lint_and_validate(tmp_path: Path) -> None:
    values = [
        *one_workspace(
            ingress={"enabled": True, "hosts": ["hooks.example.test"]}, networkPolicyFrom=INGRESS_PEERS
        ),
        "--set",
        "networkPolicy.enabled=true",
    ]
    assert_lints_and_validates(values, tmp_path)
