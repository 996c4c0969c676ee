"""The chart rendered by the real helm (3), for the chart tests: render, lint, validate offline, NOTES."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool
from tests.stack import REPO, run_tool

CHART = REPO / "helm" / "census-exporter"
VALUE_SETS = {
    "defaults": [],
    "all-features": ["-f", str(CHART / "ci" / "all-features-values.yaml")],
    "existing-secret": ["-f", str(CHART / "ci" / "existing-secret-values.yaml")],
    "workspaces": ["-f", str(CHART / "ci" / "workspaces-values.yaml")],
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool(helm_3(), *args)


@functools.cache
def helm_3() -> str:
    """The helm binary if it is helm 3: helm 4's `lint --strict` passes a template `fail` (the guards)."""
    path = require_tool("helm")
    found = run_tool(path, "version", "--short").stdout.strip()
    if not found.startswith("v3."):
        message = f"the chart tests need helm 3 (.ci/install-helm installs 3.17.2); {path} is {found or '?'}"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def render(*values: str) -> list[dict[str, Any]]:
    """`helm template` of the chart with ``values`` (helm arguments), as a list of manifests.

    The same arguments render the same manifests in one test run (the chart does not change during it), so
    each distinct rendering runs helm once; every caller gets its own copy to read or change."""
    return copy.deepcopy(_render(values))


@functools.cache
def _render(values: tuple[str, ...]) -> list[dict[str, Any]]:
    result = helm("template", "census", str(CHART), "--namespace", "monitoring", *values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [doc for doc in documents if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, got {len(matches)}"
    return matches[0]


def pod_spec(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod spec."""
    spec: dict[str, Any] = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's (one) exporter container."""
    found: dict[str, Any] = pod_spec(documents)["containers"][0]
    return found


def validate_offline(documents: list[dict[str, Any]], directory: Path) -> str:
    """kubernetes-validate --strict on ``documents``: each core manifest passes; returns the tool's output."""
    validator = require_tool("kubernetes-validate")
    path = directory / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = run_tool(validator, "--strict", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    core = [doc for doc in documents if doc["kind"] not in CRD_KINDS]
    assert output.count(" passed ") == len(core), output
    return output


def assert_lints_and_validates(values: list[str], directory: Path) -> None:
    """`helm lint --strict` passes with ``values``, and what they render validates offline."""
    lint = helm("lint", "--strict", str(CHART), *values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    validate_offline(render(*values), directory)


def render_notes(tmp_path: Path, *values: str) -> str:
    """NOTES.txt as helm would print it. `helm template` skips NOTES and `helm install --dry-run` needs a
    cluster, so a copy of the chart turns it into a named template and renders that."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" }}' + notes + "{{- end }}")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ include "test.notes" . | toJson }}\n')
    result = helm(
        "template", "census", str(chart), "-n", "monitoring", "--show-only", "templates/notes.yaml", *values
    )
    assert result.returncode == 0, result.stderr
    text: str = yaml.safe_load(result.stdout)["notes"]
    return text
