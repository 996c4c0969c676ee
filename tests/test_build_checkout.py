"""``--version`` and ``census_exporter_build_info`` from a git checkout without build metadata: the checkout's
HEAD (issue 21: a checkout printed ``unknown`` where docs/configuration.md promises the revision).

Each test lays the package out in a temporary directory as the repository does (exporter/census_exporter)
and runs ``python -m census_exporter --version`` on it, as a real process.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require_tool, version_output
from tests.stack import REPO


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        [require_tool("git"), "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def _package_at(parent: Path) -> Path:
    """A copy of the package in ``parent``, without any build metadata; returns ``parent``."""
    shutil.copytree(
        REPO / "exporter" / "census_exporter",
        parent / "census_exporter",
        ignore=shutil.ignore_patterns("__pycache__", "_build.py"),
    )
    return parent


def _checkout(tmp_path: Path, branch: str = "feature/faster-readyz") -> Path:
    """A git repository laid out as this one, one commit on ``branch``; returns its root."""
    root = tmp_path / "checkout"
    _package_at(root / "exporter")
    _git(root, "init", "-q", "-b", branch)
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    return root


def _first_line(package_parent: Path, path: str | None = None) -> str:
    return version_output(package_parent, cwd=package_parent, path=path).splitlines()[0]


def test_a_checkout_reports_its_head_commit_and_branch(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    head = _git(root, "rev-parse", "HEAD")
    assert _first_line(root / "exporter") == (
        f"census-exporter, version 0.1.0 (branch: feature/faster-readyz, revision: {head})"
    )


def test_a_detached_head_has_a_revision_and_no_branch(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    head = _git(root, "rev-parse", "HEAD")
    _git(root, "checkout", "-q", "--detach")
    assert _first_line(root / "exporter").endswith(f"(branch: unknown, revision: {head})")


def test_without_git_a_checkout_says_unknown(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    assert _first_line(root / "exporter", path=str(empty)).endswith("(branch: unknown, revision: unknown)")


def test_build_metadata_wins_over_the_checkout(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    (root / "exporter" / "census_exporter" / "_build.py").write_text(
        'REVISION = "0123abc"\nBRANCH = "v0.2.0"\n'
    )
    assert _first_line(root / "exporter").endswith("(branch: v0.2.0, revision: 0123abc)")


def test_a_package_inside_another_repository_says_unknown(tmp_path: Path) -> None:
    """An installed copy in a virtualenv inside some checkout must not report that checkout's HEAD."""
    other = tmp_path / "other"
    site_packages = other / ".venv" / "lib" / "site-packages"
    _package_at(site_packages)
    _git(other, "init", "-q", "-b", "main")
    _git(other, "add", ".")
    _git(other, "commit", "-q", "-m", "vendored")
    assert _first_line(site_packages).endswith("(branch: unknown, revision: unknown)")
