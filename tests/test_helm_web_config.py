"""The chart's web-config pieces, rendered by the real helm and validated by kubernetes-validate."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm import CHART, assert_lints_and_validates, by_kind, container, helm, render

HASH = "$2b$12$" + "a" * 53
TLS = {"cert_file": "/etc/census-exporter/tls/tls.crt", "key_file": "/etc/census-exporter/tls/tls.key"}


def web_config_values(config: dict[str, Any], **extra: Any) -> list[str]:
    values = {"webConfig": {"enabled": True, "config": config, **extra}, "serviceMonitor": {"enabled": True}}
    return [
        "--set-json",
        f"webConfig={json.dumps(values['webConfig'])}",
        "--set",
        "serviceMonitor.enabled=true",
    ]


def test_inline_tls_and_basic_auth_render_a_secret_mount_and_tcp_probes() -> None:
    documents = render(
        *web_config_values(
            {"tls_server_config": TLS, "basic_auth_users": {"prometheus": HASH}},
            tlsSecret="census-exporter-tls",
            serviceMonitor={
                "tlsConfig": {"ca": {"secret": {"name": "census-exporter-tls", "key": "ca.crt"}}},
                "basicAuth": {
                    "username": {"name": "census-scrape", "key": "username"},
                    "password": {"name": "census-scrape", "key": "password"},
                },
            },
        )
    )
    secret = next(doc for doc in documents if doc["metadata"]["name"] == "census-census-exporter-web-config")
    web_yml = yaml.safe_load(base64.b64decode(secret["data"]["web.yml"]))
    assert web_yml == {"tls_server_config": TLS, "basic_auth_users": {"prometheus": HASH}}
    main = container(documents)
    assert "--web.config.file=/etc/census-exporter/web/web.yml" in main["args"]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts["web-config"] == "/etc/census-exporter/web"
    assert mounts["web-tls"] == "/etc/census-exporter/tls"
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert volumes["web-config"] == "census-census-exporter-web-config"
    assert volumes["web-tls"] == "census-exporter-tls"
    # kubelet has no credentials: with basic auth the probes only check the port.
    for probe in (main["livenessProbe"], main["readinessProbe"]):
        assert probe["tcpSocket"] == {"port": "http"} and "httpGet" not in probe
    endpoint = by_kind(documents, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "census-exporter-tls"
    assert endpoint["basicAuth"]["password"]["key"] == "password"


def test_tls_alone_keeps_http_probes_over_https() -> None:
    main = container(render(*web_config_values({"tls_server_config": TLS})))
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}
    assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_an_existing_secret_is_mounted_and_no_secret_is_made() -> None:
    documents = render(
        "--set",
        "webConfig.enabled=true",
        "--set",
        "webConfig.existingSecret=my-web",
        "--set",
        "webConfig.tls=true",
    )
    assert not [doc for doc in documents if doc["kind"] == "Secret"]
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "web-config", "secret": {"secretName": "my-web"}} in pod["volumes"]
    assert container(documents)["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_disabled_by_default() -> None:
    documents = render("--set", "serviceMonitor.enabled=true")
    main = container(documents)
    assert not any(arg.startswith("--web.config.file") for arg in main["args"])
    assert "scheme" not in main["livenessProbe"]["httpGet"]
    assert "scheme" not in by_kind(documents, "ServiceMonitor")["spec"]["endpoints"][0]


@pytest.mark.parametrize(
    "bad",
    [
        {"enabled": True, "config": {"basic_auth_users": {"prometheus": "plain-text"}}},
        {"enabled": True, "config": {"tls_server_config": {"cert_file": "a"}}},
        {"enabled": True, "config": {"tls_config": {}}},
        {"enabled": True, "unknown": 1},
    ],
)
def test_the_schema_rejects_invalid_web_configs(bad: dict[str, Any]) -> None:
    result = helm("template", "census", str(CHART), "--set-json", f"webConfig={json.dumps(bad)}")
    assert result.returncode != 0
    assert "webConfig" in result.stderr


def test_web_config_manifests_lint_and_validate(tmp_path: Path) -> None:
    values = web_config_values(
        {"tls_server_config": TLS, "basic_auth_users": {"prometheus": HASH}}, tlsSecret="census-exporter-tls"
    )
    assert_lints_and_validates(values, tmp_path)
