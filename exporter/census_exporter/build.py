"""What this exporter was built from, for ``census_exporter_build_info`` and ``--version``.

The revision and branch come from ``census_exporter/_build.py``, which the release pipeline and the
Dockerfile write (``scripts/write-build-info``) and git ignores. Without it, a package that is this
repository's own checkout (run from the work tree, or installed with ``pip install -e``) asks git for the
checkout's HEAD: its commit and branch (``unknown`` for a detached HEAD, or when git is missing or
fails). Anything else, a copy of the package outside a checkout or installed inside some other
repository, says ``unknown``. The Python version and platform are those of the interpreter running the
exporter.
"""

from __future__ import annotations

import importlib
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from census_exporter import __version__

UNKNOWN = "unknown"
#: What a revision or branch may look like (a git sha, a tag, a branch name); anything else is unknown.
_BUILD_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """The labels of ``census_exporter_build_info``, named as other Prometheus exporters name them."""

    version: str
    revision: str
    branch: str
    python_version: str
    platform: str

    def labels(self) -> list[tuple[str, str]]:
        """(name, value) pairs, in the order of the metric's labels."""
        return [
            ("version", self.version),
            ("revision", self.revision),
            ("branch", self.branch),
            ("python_version", self.python_version),
            ("platform", self.platform),
        ]

    def version_text(self) -> str:
        """What ``--version`` prints, in the Prometheus exporters' layout."""
        return (
            f"census-exporter, version {self.version} (branch: {self.branch}, revision: {self.revision})\n"
            f"  python version: {self.python_version}\n"
            f"  platform:       {self.platform}"
        )


#: Where the package lives in the repository.
_PACKAGE = Path(__file__).resolve().parent
_IN_REPOSITORY = Path("exporter", "census_exporter")
_GIT_TIMEOUT_SECONDS = 5.0


def _valid(value: object) -> str:
    return value if isinstance(value, str) and _BUILD_VALUE.fullmatch(value) else UNKNOWN


def _stamped() -> tuple[str, str] | None:
    """The revision and branch written at build time, or None when nothing was."""
    try:
        module = importlib.import_module("census_exporter._build")
    except ImportError:
        return None
    return _valid(getattr(module, "REVISION", None)), _valid(getattr(module, "BRANCH", None))


def _git(*args: str) -> str | None:
    """git's one-line answer about the package's directory; None if git is missing or fails."""
    try:
        result = subprocess.run(
            ["git", "-C", str(_PACKAGE), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=_GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _checkout() -> tuple[str, str]:
    """The revision and branch of the checkout this package is, if it is one of this repository."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or (Path(top) / _IN_REPOSITORY).resolve() != _PACKAGE:
        return UNKNOWN, UNKNOWN  # not in git, or in some other repository (a venv inside a checkout)
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    return _valid(_git("rev-parse", "HEAD")), UNKNOWN if branch == "HEAD" else _valid(branch)


def build_info() -> BuildInfo:
    """This process's build info."""
    revision, branch = _stamped() or _checkout()
    return BuildInfo(
        version=__version__,
        revision=revision,
        branch=branch,
        python_version=platform.python_version(),
        platform=f"{sys.platform}/{platform.machine() or UNKNOWN}",
    )


BUILD = build_info()
