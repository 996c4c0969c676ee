"""The release pipeline as code (issue 21): .github/workflows/release.yml passes actionlint and runs the
steps of scripts/release, which build here what a tag publishes (the image: make docker-smoke)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from census_exporter import __version__
from tests.conftest import require_tool
from tests.helm import helm_3
from tests.stack import REPO, run_tool

WORKFLOWS = REPO / ".github" / "workflows"
RELEASE = REPO / "scripts" / "release"


def workflow() -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    return document


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return found


def release(
    *args: str, env: dict[str, str] | None = None, script: Path = RELEASE
) -> subprocess.CompletedProcess[str]:
    """scripts/release with ``env`` added, uv and the test environment's tools on PATH."""
    path = os.pathsep.join([str(Path(require_tool("uv")).parent), os.environ.get("PATH", "")])
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": path, **(env or {})},
    )


def test_every_workflow_passes_actionlint() -> None:
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert files
    result = run_tool(require_tool("actionlint"), *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v6\n        with:\n          no-such-input: 1\n"
        "      - run: echo ${{ github.no_such_context.x }}\n"
    )
    result = run_tool(require_tool("actionlint"), str(broken))
    assert result.returncode != 0
    assert "no-such-input" in result.stdout


def test_a_tag_builds_each_artefact_the_issue_names() -> None:
    document = workflow()
    # PyYAML reads the key `on` as True.
    assert document[True] == {"push": {"tags": ["v*"]}}
    runs = [step.get("run", "") for job in document["jobs"].values() for step in job["steps"]]
    for command in (
        'scripts/release check "$GITHUB_REF_NAME"',
        "scripts/release python",
        "scripts/release chart",
    ):
        assert any(command in run for run in runs), command
    (build,) = (
        step for step in steps("image") if step.get("uses", "").startswith("docker/build-push-action@")
    )
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["sbom"] is True and build["with"]["push"] is True
    assert "REVISION=${{ github.sha }}" in build["with"]["build-args"]
    assert any("helm push" in run and "$CHART_REPOSITORY" in run for run in runs)
    assert document["env"]["CHART_REPOSITORY"].startswith("oci://")
    assert any(step.get("uses", "").startswith("pypa/gh-action-pypi-publish@") for step in steps("pypi"))
    # The chart's default image is where the workflow pushes the image, tagged as the chart's appVersion.
    values = yaml.safe_load((REPO / "helm" / "census-exporter" / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/census-exporter/census-exporter"
    assert document["env"]["IMAGE"] == "ghcr.io/${{ github.repository_owner }}/census-exporter"
    # Every step the workflow names exists in the script.
    script = RELEASE.read_text()
    for step in re.findall(r"scripts/release (\w[\w-]*)", " ".join(runs)):
        assert re.search(rf"^  {step}\)", script, re.M), step


def test_the_version_check_refuses_a_tag_or_file_that_disagrees(tmp_path: Path) -> None:
    assert release("check", f"v{__version__}").returncode == 0
    wrong_tag = release("check", f"v{__version__}.1")
    assert wrong_tag.returncode != 0 and "does not match" in wrong_tag.stdout
    copy = tmp_path / "repo"
    for name in ("scripts/release", "exporter/census_exporter/__init__.py", "Dockerfile", "CHANGELOG.md"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, copy / name)
    chart = copy / "helm" / "census-exporter" / "Chart.yaml"
    chart.parent.mkdir(parents=True)
    chart.write_text(
        (REPO / "helm/census-exporter/Chart.yaml")
        .read_text()
        .replace(f'appVersion: "{__version__}"', 'appVersion: "9.9.9"')
    )
    result = release("check", script=copy / "scripts" / "release")
    assert result.returncode != 0 and "appVersion 9.9.9" in result.stdout


def test_the_python_step_builds_a_twine_checked_sdist_and_wheel_with_build_info(tmp_path: Path) -> None:
    build_info = REPO / "exporter" / "census_exporter" / "_build.py"
    existed = build_info.exists()
    result = release("python", env={"DIST": str(tmp_path), "REVISION": "0123abc", "BRANCH": "v9"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout  # twine check, both files
    wheel = tmp_path / f"census_exporter-{__version__}-py3-none-any.whl"
    sdist = tmp_path / f"census_exporter-{__version__}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"census_exporter-{__version__}.dist-info/METADATA").decode()
        stamped = archive.read("census_exporter/_build.py").decode()
    assert f"\nVersion: {__version__}\n" in metadata and "Requires-Dist: httpx" in metadata
    assert "REVISION = '0123abc'" in stamped and "BRANCH = 'v9'" in stamped
    with tarfile.open(sdist) as archive:
        assert f"census_exporter-{__version__}/exporter/census_exporter/cli/main.py" in archive.getnames()
    assert build_info.exists() == existed, "the build info of a release must not land in the work tree"


def test_the_chart_step_packages_the_chart_artefact(tmp_path: Path) -> None:
    helm = helm_3()
    helm_home = {f"HELM_{k}_HOME": str(tmp_path / "helm" / k) for k in ("CACHE", "CONFIG", "DATA")}
    env = {"DIST": str(tmp_path), "PATH": f"{Path(helm).parent}{os.pathsep}{os.environ['PATH']}", **helm_home}
    result = release("chart", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    package = tmp_path / f"census-exporter-{__version__}.tgz"
    shown = run_tool(helm, "show", "chart", str(package))
    assert shown.returncode == 0, shown.stderr
    chart = yaml.safe_load(shown.stdout)
    assert (chart["version"], chart["appVersion"]) == (__version__, __version__)


def test_make_release_dry_run_runs_every_step() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^release-dry-run:.*\n\tscripts/release dry-run", makefile, re.M)
    script = RELEASE.read_text()
    dry_run = script[script.index("  dry-run)") :]
    for step in ("check ", "python_dist", "chart", "image"):
        assert step in dry_run, step
