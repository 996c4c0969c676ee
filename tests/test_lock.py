"""The lock files (issue 21): uv.lock pins and hashes every dependency and matches pyproject.toml; the image
installs only from its hashed exports.

`uv lock --check --offline` decides "matches" the way uv itself does, without the network: a dependency
added, removed or narrowed in pyproject.toml that the lock no longer satisfies fails it (shown on a copy).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parent.parent
EXPORTS = {
    "requirements.lock": ["--no-default-groups"],
    "requirements-build.lock": ["--only-group", "build"],
}


def uv(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The real uv, offline, with its own empty cache and no user or system uv.toml."""
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(cache),
        "UV_NO_CONFIG": "1",
        "UV_OFFLINE": "1",
        "UV_PYTHON": sys.executable,
    }
    return subprocess.run(
        [require_tool("uv"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def project_copy(tmp_path: Path) -> Path:
    """What uv reads of the project (metadata, lock and the version's module) in a scratch directory."""
    copy = tmp_path / "project"
    (copy / "exporter" / "census_exporter").mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock", "README.md", "LICENSE"):
        shutil.copy(REPO / name, copy / name)
    shutil.copy(REPO / "exporter/census_exporter/__init__.py", copy / "exporter/census_exporter/__init__.py")
    return copy


def test_uv_lock_matches_pyproject(tmp_path: Path) -> None:
    result = uv("lock", "--check", cwd=project_copy(tmp_path), cache=tmp_path / "cache")
    assert result.returncode == 0, f"uv.lock is out of date: run `make lock`\n{result.stderr}"


def test_a_dependency_the_lock_lacks_fails_the_check(tmp_path: Path) -> None:
    copy = project_copy(tmp_path)
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"pyyaml>=6",\n', '"pyyaml>=6",\n    "rich>=13",\n', 1))
    assert pyproject.read_text() != text
    result = uv("lock", "--check", cwd=copy, cache=tmp_path / "cache")
    assert result.returncode != 0, result.stdout + result.stderr


def test_a_narrowed_requirement_the_pin_misses_fails_the_check(tmp_path: Path) -> None:
    copy = project_copy(tmp_path)
    pinned = locked_versions(REPO / "requirements.lock")["httpx"]
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"httpx>=0.27,<1"', f'"httpx>0.27,!={pinned},<1"', 1))
    result = uv("lock", "--check", cwd=copy, cache=tmp_path / "cache")
    assert result.returncode != 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_the_committed_export_is_the_locks(name: str, tmp_path: Path) -> None:
    args = ["export", "--frozen", "--no-header", "--no-emit-project", "--format", "requirements-txt"]
    result = uv(*args, *EXPORTS[name], cwd=project_copy(tmp_path), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert (REPO / name).read_text() == result.stdout, f"{name} differs from uv.lock: run `make lock`"


def locked_versions(path: Path) -> dict[str, str]:
    """name -> pinned version of a hashed requirements file, checking that every pin carries a hash."""
    text = path.read_text()
    entries = re.split(r"\n(?=\S)", text.strip())
    versions: dict[str, str] = {}
    for entry in entries:
        if entry.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9_.-]+)==([^ ;\\]+)", entry)
        assert match, f"{path.name}: not an exact pin: {entry.splitlines()[0]}"
        assert "--hash=sha256:" in entry, f"{path.name}: {match[1]} has no hash"
        versions[match[1].lower()] = match[2]
    return versions


def test_every_runtime_dependency_is_pinned_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    versions = locked_versions(REPO / "requirements.lock")
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name, requirement
        assert name[0].lower().replace("_", "-") in versions, f"{requirement} is not in requirements.lock"
    assert not {"pytest", "ruff", "mypy", "uv", "setuptools"} & versions.keys(), (
        "test or build tools in the image"
    )


def test_the_build_group_is_the_build_system() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["dependency-groups"]["build"] == pyproject["build-system"]["requires"]
    versions = locked_versions(REPO / "requirements-build.lock")
    assert {"setuptools", "wheel"} <= versions.keys()


def test_the_image_installs_only_what_the_lock_hashes() -> None:
    text = (REPO / "Dockerfile").read_text()
    commands = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    installs = re.findall(r"pip install ([^&]*)", commands)
    assert len(installs) == 3, installs
    locked = [args for args in installs if "-r requirements" in args]
    assert len(locked) == 2
    for args in locked:
        assert "--require-hashes" in args and "--only-binary :all:" in args, args
    (wheel,) = (args for args in installs if "-r requirements" not in args)
    assert "--no-deps" in wheel and "--no-index" in wheel, "the project's wheel must bring no dependency"
    assert "--no-build-isolation" in re.search(r"pip wheel ([^&]*)", commands)[0]  # type: ignore[index]
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {"!requirements.lock", "!requirements-build.lock"} <= set(ignored)
