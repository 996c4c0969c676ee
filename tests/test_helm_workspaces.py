"""The chart's several-workspaces mode, rendered by the real helm. The workspaces file it writes is read back
by the exporter's own parser, so the chart and the parser cannot drift apart."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from census_exporter.patterns import SyncPattern
from census_exporter.workspaces import (
    AutoDiscovery,
    SyncFilter,
    TokenLocation,
    WorkspaceConfig,
    default_api_url,
    parse_workspaces_file,
)
from tests.helm import CHART, VALUE_SETS, by_kind, helm, pod_spec, render, render_notes

VALUES_FILE = CHART / "ci" / "workspaces-values.yaml"
SINGLE_WORKSPACE_FLAGS = (
    "--census.api-url",
    "--census.region",
    "--census.token-file",
    "--census.api-version",
    "--census.group-id",
    "--census.workspace",
)


def workspaces_values() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(VALUES_FILE.read_text())["workspaces"]
    return entries


def with_workspaces(entries: list[dict[str, Any]], *extra: str) -> list[str]:
    return ["--set-json", f"workspaces={json.dumps(entries)}", *extra]


def pod_template(documents: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = by_kind(documents, "Deployment")["spec"]["template"]
    return template


def rendered_file(documents: list[dict[str, Any]]) -> str:
    text: str = by_kind(documents, "ConfigMap")["data"]["workspaces.yaml"]
    return text


def token_file_name(index: int, entry: dict[str, Any]) -> str:
    return f"_auto-{index}" if entry.get("auto") else str(entry["name"])


def expected_api_url(entry: dict[str, Any]) -> str:
    if "api_url" in entry:
        return str(entry["api_url"]).rstrip("/")
    return default_api_url(entry["api_version"], entry.get("region", "us"))


def expected_filter(entry: dict[str, Any]) -> SyncFilter:
    return SyncFilter(
        include=tuple(SyncPattern(p) for p in entry.get("include", [])),
        exclude=tuple(SyncPattern(p) for p in entry.get("exclude", [])),
    )


def without_line(item: WorkspaceConfig | AutoDiscovery) -> WorkspaceConfig | AutoDiscovery:
    return dataclasses.replace(item, line=None)


def test_the_rendered_file_parses_to_what_the_values_say() -> None:
    entries = workspaces_values()
    schema = json.loads((CHART / "values.schema.json").read_text())
    allowed = set(schema["properties"]["workspaces"]["items"]["properties"])
    assert set().union(*entries) == allowed, "the CI values must use every key, so this test covers them all"

    parsed = parse_workspaces_file(rendered_file(render("-f", str(VALUES_FILE))), "workspaces.yaml")

    expected_workspaces = [
        WorkspaceConfig(
            name=entry["name"],
            api_version=entry["api_version"],
            api_url=expected_api_url(entry),
            token=TokenLocation(file=Path(f"/run/secrets/census/{entry['name']}")),
            group_id=entry.get("group_id"),
            syncs=expected_filter(entry),
            webhook_secrets=tuple(
                TokenLocation(file=Path(f"/run/secrets/census-webhooks/{entry['name']}-{n}"))
                for n in range(len(entry.get("webhookSecrets", [])))
            ),
        )
        for entry in entries
        if not entry.get("auto")
    ]
    expected_discoveries = [
        AutoDiscovery(
            api_version=entry["api_version"],
            api_url=expected_api_url(entry),
            token=TokenLocation(file=Path(f"/run/secrets/census/_auto-{index}")),
            syncs=expected_filter(entry),
            relist_interval_seconds=float(entry.get("relist_interval_seconds", 300)),
        )
        for index, entry in enumerate(entries)
        if entry.get("auto")
    ]
    assert [without_line(w) for w in parsed.workspaces] == expected_workspaces
    assert [without_line(d) for d in parsed.discoveries] == expected_discoveries


def test_regexes_and_urls_survive_the_rendering_verbatim() -> None:
    tricky = ['^a "quoted" # not a comment$', "\\d+: {x}", "ünïcode & <tags>", "'", "- dash"]
    entries = [
        {
            "name": "tricky",
            "api_version": "v1",
            "api_url": "https://census.internal.test:8443/api/v1/",
            "include": tricky,
            "exclude": ["null", "true", "1"],
            "token": "secret-token:x",
        }
    ]
    (workspace,) = parse_workspaces_file(
        rendered_file(render(*with_workspaces(entries))), "w.yaml"
    ).workspaces
    assert [p.pattern for p in workspace.syncs.include] == tricky
    assert [p.pattern for p in workspace.syncs.exclude] == ["null", "true", "1"]
    assert workspace.api_url == "https://census.internal.test:8443/api/v1"


def test_each_token_file_is_the_entrys_own_secret_key() -> None:
    entries = workspaces_values()
    documents = render("-f", str(VALUES_FILE))
    parsed = parse_workspaces_file(rendered_file(documents), "workspaces.yaml")
    token_files = [w.token.file for w in parsed.workspaces] + [d.token.file for d in parsed.discoveries]
    pod = pod_spec(documents)
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "census-tokens"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "census-tokens"]
    assert volume["projected"]["defaultMode"] == 0o400
    # Which Secret key each file of the volume shows.
    files = {
        str(PurePosixPath(mount["mountPath"]) / item["path"]): (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert sorted(files) == sorted(str(f) for f in token_files)
    chart_secret = by_kind(documents, "Secret")
    for index, entry in enumerate(entries):
        secret_name, key = files[f"/run/secrets/census/{token_file_name(index, entry)}"]
        if "existingSecret" in entry:
            assert (secret_name, key) == (entry["existingSecret"]["name"], entry["existingSecret"]["key"])
        else:
            assert secret_name == chart_secret["metadata"]["name"]
            assert base64.b64decode(chart_secret["data"][key]).decode() == entry["token"]


def test_no_token_outside_the_chart_made_secret() -> None:
    entries = workspaces_values()
    tokens = [entry["token"] for entry in entries if "token" in entry]
    assert tokens
    documents = render("-f", str(VALUES_FILE))
    outside = yaml.safe_dump_all([doc for doc in documents if doc["kind"] != "Secret"])
    for token in tokens:
        assert token not in outside
        assert base64.b64encode(token.encode()).decode() not in outside
    container = pod_spec(documents)["containers"][0]
    assert "env" not in container and "envFrom" not in container


def test_args_pass_the_mounted_file_and_no_single_workspace_flag() -> None:
    documents = render("-f", str(VALUES_FILE))
    container = pod_spec(documents)["containers"][0]
    args = container["args"]
    (config_arg,) = [arg for arg in args if arg.startswith("--config.file=")]
    path = PurePosixPath(config_arg.removeprefix("--config.file="))
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "workspaces"]
    assert mount["readOnly"] is True and PurePosixPath(mount["mountPath"]) == path.parent
    (volume,) = [v for v in pod_spec(documents)["volumes"] if v["name"] == "workspaces"]
    config_map = by_kind(documents, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert path.name in config_map["data"]
    assert not [arg for arg in args if arg.split("=")[0] in SINGLE_WORKSPACE_FLAGS]
    assert "--census.cache-ttl=60" in args, "the settings shared by every workspace stay flags"


def test_default_values_render_the_one_workspace_deployment_as_before() -> None:
    documents = render()
    assert render(*with_workspaces([])) == documents
    assert not [doc for doc in documents if doc["kind"] in ("ConfigMap", "Secret")]
    pod = pod_spec(documents)
    container = pod["containers"][0]
    assert container["args"] == [
        "--census.token-file=/var/run/secrets/census/token",
        "--census.workspace=default",
        "--census.region=us",
        "--census.cache-ttl=60",
        "--census.concurrency=8",
        "--census.request-timeout=10",
        "--census.refresh-timeout=60",
        "--census.max-requests-per-second=10",
        "--census.max-response-bytes=16777216",
        "--census.duration-histogram=workspace",
        "--census.record-totals=workspace",
        "--web.listen-address=:10049",
        "--storage.path=/var/lib/census-exporter",
        "--log.level=info",
        "--log.format=logfmt",
    ]
    assert container["volumeMounts"] == [
        {"name": "census-token", "mountPath": "/var/run/secrets/census", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "storage", "mountPath": "/var/lib/census-exporter"},
    ]
    assert [v["name"] for v in pod["volumes"]] == ["census-token", "tmp", "storage"]
    assert "annotations" not in pod_template(documents)["metadata"], "no checksum and no annotations: null"
    for name in ("all-features", "existing-secret"):
        assert render(*VALUE_SETS[name], *with_workspaces([])) == render(*VALUE_SETS[name])


def test_a_changed_file_or_chart_token_rolls_the_pod() -> None:
    def checksum(entries: list[dict[str, Any]]) -> str:
        value: str = pod_template(render(*with_workspaces(entries)))["metadata"]["annotations"][
            "checksum/workspaces"
        ]
        return value

    entries = workspaces_values()
    base = checksum(entries)
    other_token = [{**e, "token": "secret-token:rotated"} if "token" in e else e for e in entries]
    other_filter = [{**entries[0], "exclude": ["^staging "]}, *entries[1:]]
    assert len({base, checksum(other_token), checksum(other_filter)}) == 3


def test_notes_name_the_workspaces_and_the_secrets_to_create(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, "-f", str(VALUES_FILE))
    assert "marketing, sales, and the workspaces a discovery entry finds" in notes
    assert "census-marketing (key api-token)" in notes
    assert "WARNING: no API token configured" not in notes


V1 = {"name": "a", "api_version": "v1", "token": "secret-token:x"}


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ([{**V1, "api_version": "v3"}], "api_version"),
        ([{**V1, "api_version": "v2"}], "group_id"),
        ([{**V1, "group_id": "g"}], "group_id"),
        ([{"name": "a", "api_version": "v1"}], "token"),
        ([{**V1, "existingSecret": {"name": "s", "key": "k"}}], "existingSecret"),
        ([{"name": "a", "api_version": "v1", "existingSecret": {"name": "s"}}], "key"),
        ([{**V1, "token_file": "/tmp/token"}], "token_file"),
        ([{**V1, "token_env": "CENSUS_TOKEN"}], "token_env"),
        ([{**V1, "include": "^prod"}], "include"),
        ([{**V1, "exclude": [1]}], "exclude"),
        ([{**V1, "name": "two words"}], "name"),
        ([{"api_version": "v1", "token": "secret-token:x"}], "name"),
        ([{**V1, "region": "eu", "api_url": "https://census.test"}], "region"),
        ([{**V1, "api_url": "https://census.test/api/v2"}], "api_url"),
        ([{**V1, "relist_interval_seconds": 60}], "relist_interval_seconds"),
        ([{"auto": True, "name": "a", "api_version": "v1", "token": "t"}], "name"),
        ([{"auto": True, "api_version": "v2", "group_id": "g", "token": "t"}], "group_id"),
        ([{"auto": True, "api_version": "v1", "token": "t", "relist_interval_seconds": 0}], "relist"),
    ],
)
def test_the_schema_refuses_bad_entries_naming_the_field(entries: list[dict[str, Any]], named: str) -> None:
    for command in (["template", "census"], ["lint", "--strict"]):
        result = helm(*command, str(CHART), *with_workspaces(entries))
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"helm {command[0]} accepted {entries}"
        assert "schema" in output and named in output, output
        assert "secret-token:" not in output, "a refusal must not echo a token"


@pytest.mark.parametrize(
    ("entries", "extra", "message"),
    [
        ([V1, {**V1, "token": "secret-token:y"}], [], 'the name "a" is already used by workspaces[0]'),
        ([V1], ["--set", "census.token=secret-token:z"], "census.token is for one workspace"),
        ([V1], ["--set", "census.existingSecret=census-api"], "census.existingSecret is for one workspace"),
        ([V1], ["--set-json", 'extraArgs=["--census.workspace=b"]'], "--census.workspace cannot be combined"),
    ],
)
def test_the_templates_refuse_what_a_schema_cannot_say(
    entries: list[dict[str, Any]], extra: list[str], message: str
) -> None:
    values = with_workspaces(entries, *extra)
    result = helm("template", "census", str(CHART), *values)
    assert result.returncode != 0, f"accepted {entries} {extra}"
    assert message in result.stderr, result.stderr
    assert "secret-token:" not in result.stderr, "a refusal must not echo a token"
    # helm lint runs templates in lint mode, where `fail` is only reported: it must at least say it.
    lint = helm("lint", "--strict", str(CHART), *values)
    assert message in lint.stdout + lint.stderr
