"""The detection benchmark's code path at a tiny size and fast timing, so `make bench-detection` cannot rot.

It runs the real stack (simulator, exporter subprocess, Prometheus with the shipped rules) and checks that
every trial's failure was selected by ``CensusSyncFailed``'s expression; no timing is asserted.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.detection import Timing, report, run_size
from tests.conftest import require_tool


def test_every_trial_is_selected_and_the_report_has_a_row_per_size(tmp_path: Path) -> None:
    require_tool("prometheus")
    timing = Timing(ttl_seconds=2.0, scrape_seconds=2.0)

    result = run_size(30, trials=2, held_trials=1, workdir=tmp_path, timeout=90.0, timing=timing)

    assert [trial.held for trial in result.trials] == [False, False, True]
    assert len({trial.sync_id for trial in result.trials}) == 3
    assert all(trial.selected_after is not None for trial in result.trials), result.trials
    assert result.requests_per_second > 0
    text = report([result], timeout=90.0, timing=timing)
    header = next(line for line in text.splitlines() if line.startswith("| Syncs |"))
    row = next(line for line in text.splitlines() if line.startswith("| 30 |"))
    assert row.count("|") == header.count("|")
    assert "not selected" not in row
    assert "target 6 s" in text
