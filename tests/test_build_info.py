"""census_exporter_build_info and --version: version, revision, branch, Python version, platform."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

from census_exporter.build import BUILD
from tests.conftest import HarnessFactory, version_output
from tests.stack import REPO

PLATFORM = f"{sys.platform}/{platform.machine()}"


def test_metrics_carry_the_build_labels(harness_factory: HarnessFactory) -> None:
    harness = harness_factory()
    scrape = harness.scrape()
    series = scrape.all("census_exporter_build_info")
    assert len(series) == 1
    labels = dict(next(iter(series)))
    assert labels == {
        "version": "0.1.0",
        "revision": BUILD.revision,
        "branch": BUILD.branch,
        "python_version": platform.python_version(),
        "platform": PLATFORM,
    }
    assert next(iter(series.values())) == 1


def _package_copy(tmp_path: Path) -> Path:
    """The package and the stamping script, laid out as in the repository, without any _build.py."""
    shutil.copytree(REPO / "exporter" / "census_exporter", tmp_path / "exporter" / "census_exporter")
    (tmp_path / "exporter" / "census_exporter" / "_build.py").unlink(missing_ok=True)
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "write-build-info", tmp_path / "scripts")
    return tmp_path


def _version(root: Path) -> str:
    return version_output(root / "exporter", cwd=root)


def test_a_plain_checkout_says_unknown(tmp_path: Path) -> None:
    root = _package_copy(tmp_path)
    assert _version(root).splitlines() == [
        "census-exporter, version 0.1.0 (branch: unknown, revision: unknown)",
        f"  python version: {platform.python_version()}",
        f"  platform:       {PLATFORM}",
    ]


def test_a_stamped_build_reports_its_revision_and_branch(tmp_path: Path) -> None:
    root = _package_copy(tmp_path)
    subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "write-build-info"),
            "--revision",
            "0123abc",
            "--branch",
            "main",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert (
        _version(root).splitlines()[0] == "census-exporter, version 0.1.0 (branch: main, revision: 0123abc)"
    )


def test_the_stamping_script_refuses_a_value_that_is_not_a_git_name(tmp_path: Path) -> None:
    root = _package_copy(tmp_path)
    result = subprocess.run(
        [sys.executable, str(root / "scripts" / "write-build-info"), "--revision", 'x"; import os #'],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert not (root / "exporter" / "census_exporter" / "_build.py").exists()


def test_a_tampered_build_file_reports_unknown_not_its_text(tmp_path: Path) -> None:
    root = _package_copy(tmp_path)
    (root / "exporter" / "census_exporter" / "_build.py").write_text('REVISION = "a b\\nc"\nBRANCH = 7\n')
    assert "(branch: unknown, revision: unknown)" in _version(root)
