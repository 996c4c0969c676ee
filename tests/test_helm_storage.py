"""The chart's storage for restart continuity (``--storage.path``), rendered by the real helm.

An emptyDir by default (it survives container restarts), a PersistentVolumeClaim on request (made by the
chart, or an existing one), nothing when disabled; the schema refuses what the templates cannot use.
"""

from __future__ import annotations

from typing import Any

import pytest

from census_exporter.cli.flags import build_parser
from tests.helm import CHART, by_kind, container, helm, pod_spec, render

MOUNT = "/var/lib/census-exporter"


def storage_volume(documents: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((v for v in pod_spec(documents)["volumes"] if v["name"] == "storage"), None)


def test_by_default_the_ledgers_live_in_an_empty_dir_mounted_where_the_flag_points() -> None:
    documents = render()
    assert storage_volume(documents) == {"name": "storage", "emptyDir": {"sizeLimit": "256Mi"}}
    main = container(documents)
    assert f"--storage.path={MOUNT}" in main["args"]
    assert {"name": "storage", "mountPath": MOUNT} in main["volumeMounts"]
    assert not [doc for doc in documents if doc["kind"] == "PersistentVolumeClaim"]
    assert "strategy" not in by_kind(documents, "Deployment")["spec"]
    # The flag the chart passes is one the exporter has.
    assert "--storage.path" in {setting.flag for setting in build_parser().settings}


def test_a_claim_on_request_is_made_kept_on_uninstall_and_the_pod_is_recreated_not_rolled() -> None:
    documents = render(
        "--set",
        "storage.type=persistentVolumeClaim",
        "--set",
        "storage.persistentVolumeClaim.size=2Gi",
        "--set",
        "storage.persistentVolumeClaim.storageClassName=fast",
    )
    claim = by_kind(documents, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "2Gi"}},
    }
    assert storage_volume(documents) == {
        "name": "storage",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }
    assert by_kind(documents, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_an_existing_claim_is_used_and_none_is_made() -> None:
    documents = render(
        "--set",
        "storage.type=persistentVolumeClaim",
        "--set",
        "storage.persistentVolumeClaim.existingClaim=ledgers",
    )
    assert not [doc for doc in documents if doc["kind"] == "PersistentVolumeClaim"]
    assert storage_volume(documents) == {"name": "storage", "persistentVolumeClaim": {"claimName": "ledgers"}}


def test_disabled_there_is_no_flag_and_no_volume() -> None:
    documents = render("--set", "storage.enabled=false")
    assert storage_volume(documents) is None
    main = container(documents)
    assert not [arg for arg in main["args"] if arg.startswith("--storage.path")]
    assert all(mount["name"] != "storage" for mount in main["volumeMounts"])


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (["--set", "storage.type=hostPath"], "type"),
        (["--set", "storage.emptyDir.sizeLimit=lots"], "sizeLimit"),
        (["--set", "storage.persistentVolumeClaim.size=1 GB"], "size"),
        (["--set", "storage.persistentVolumeClaim.accessMode=ReadWriteMany"], "accessMode"),
        (["--set", "storage.enabled=yes"], "enabled"),
    ],
)
def test_the_schema_refuses_bad_storage_values_naming_the_field(values: list[str], named: str) -> None:
    result = helm("template", "census", str(CHART), *values)
    assert result.returncode != 0
    assert named in result.stderr, result.stderr
