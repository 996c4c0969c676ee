"""What this exporter was built from, for ``census_exporter_build_info`` and ``--version``.

The revision and branch come from ``census_exporter/_build.py``, which the release pipeline and the
Dockerfile write (``scripts/write-build-info``) and git ignores; a plain checkout has none and says
``unknown``. The Python version and platform are those of the interpreter running the exporter.
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
from dataclasses import dataclass

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


def _stamped(name: str) -> str:
    try:
        module = importlib.import_module("census_exporter._build")
    except ImportError:
        return UNKNOWN
    value = getattr(module, name, None)
    return value if isinstance(value, str) and _BUILD_VALUE.fullmatch(value) else UNKNOWN


def build_info() -> BuildInfo:
    """This process's build info."""
    return BuildInfo(
        version=__version__,
        revision=_stamped("REVISION"),
        branch=_stamped("BRANCH"),
        python_version=platform.python_version(),
        platform=f"{sys.platform}/{platform.machine() or UNKNOWN}",
    )


BUILD = build_info()
