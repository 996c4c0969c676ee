"""The whole census_ exposition of the reference workspace, compared with reviewed golden files.

Any change to a metric name, type, label, HELP text or value shows up as a diff of
``tests/golden/reference_workspace.txt`` (the default settings) or
``tests/golden/reference_workspace_everything.txt`` (every optional series). After an intended change,
regenerate them with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_exposition.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from census_exporter.config import Exposition
from census_exporter.demo import reference_workspace
from tests.conftest import Harness

GOLDEN = {
    "default": (Path(__file__).parent / "golden" / "reference_workspace.txt", Exposition()),
    "everything": (
        Path(__file__).parent / "golden" / "reference_workspace_everything.txt",
        Exposition.everything(),
    ),
}

#: Families whose values depend on the clock or on request timing, not on the workspace.
VOLATILE_FAMILIES = (
    "census_last_refresh_timestamp_seconds",
    "census_refresh_duration_seconds",
    "census_sync_data_timestamp_seconds",
    "census_api_",
)


def _stable_census_lines(text: str) -> str:
    kept = []
    for line in text.splitlines():
        name = line.split(" ")[2] if line.startswith("# ") else line.split("{")[0].split(" ")[0]
        if name.startswith("census_") and not name.startswith(VOLATILE_FAMILIES):
            # Revision, branch, Python and platform differ between machines: tests/test_build_info.py.
            kept.append(re.sub(r"^(census_exporter_build_info)\{.*\}", r"\1{...}", line))
    return "\n".join(kept) + "\n"


@pytest.mark.parametrize("setting", list(GOLDEN))
def test_reference_workspace_exposition_matches_the_golden_file(
    harness_factory: Callable[..., Harness], setting: str
) -> None:
    golden, exposition = GOLDEN[setting]
    workspace = reference_workspace()
    h = harness_factory(workspace, exposition=exposition)
    # The documented example as first seen (nothing counted yet), then after one more run failed.
    baseline = _stable_census_lines(h.get("/metrics").text)
    workspace.add_run(
        52,
        raw={
            "id": 95,
            "sync_id": 52,
            "status": "failed",
            "source_record_count": 7,
            "records_processed": 7,
            "records_updated": 5,
            "records_failed": 2,
            "records_invalid": 0,
            "created_at": "2021-10-20T03:00:00.000Z",
            "updated_at": "2021-10-20T03:02:30.500Z",
            "completed_at": None,
            "scheduled_execution_time": "2021-10-20T03:00:00.000Z",
            "error_code": "DESTINATION_REJECTED",
            "error_message": "Two records were rejected.",
            "canceled": False,
            "full_sync": False,
            "sync_trigger_reason": {"ui_tag": "Schedule", "ui_detail": "Scheduled"},
        },
    )
    after = _stable_census_lines(h.get("/metrics").text)
    text = baseline + "# ---- after run 95 failed\n" + after
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
