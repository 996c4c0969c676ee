"""What the refresher logs: one startup summary instead of a line per old failure, and each model problem
once per sync."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest

from census_exporter.census.models import Skipped, SyncRun, parse_sync_run
from census_exporter.demo import SimulatedWorkspace
from census_exporter.refresh import one_sync
from tests.conftest import Harness

HarnessFactory = Callable[..., Harness]


def messages(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_the_first_refresh_sums_up_old_failures_in_one_line_and_new_ones_keep_their_own(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 11):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id, "failed" if sync_id <= 7 else "completed", error_code="E")
    h = harness_factory(workspace)
    with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
        h.refresh()
        assert messages(caplog, "first refresh") == [
            "first refresh: 10 syncs, 7 whose newest run failed: s1, s2, s3, s4, s5…"
        ]
        assert messages(caplog, "sync run failed") == []

        workspace.add_run(9, "failed", run_id=500, error_code="E")
        h.refresh()
        h.refresh()
    failed = messages(caplog, "sync run failed")
    assert len(failed) == 1 and "run_id=500" in failed[0]
    assert len(messages(caplog, "first refresh")) == 1


def test_a_sync_first_seen_after_startup_does_not_repeat_the_summary(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="s1")
    workspace.add_run(1)
    h = harness_factory(workspace)
    with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
        h.refresh()
        assert messages(caplog, "first refresh") == ["first refresh: 1 syncs, 0 whose newest run failed"]
        workspace.add_sync(2, label="s2")
        workspace.add_run(2, "failed", run_id=700)
        h.refresh()
    assert len(messages(caplog, "first refresh")) == 1
    assert len(messages(caplog, "sync run failed")) == 1  # a new sync's failed newest run, as before


def test_model_problems_are_logged_once_per_sync_and_problem(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def with_problem(raw: object) -> SyncRun | Skipped:
        parsed = parse_sync_run(raw)
        problem = "records_processed " + "9" * 300 + " is out of range"
        return parsed if isinstance(parsed, Skipped) else replace(parsed, problems=(problem,))

    monkeypatch.setattr(one_sync, "parse_sync_run", with_problem)
    workspace = SimulatedWorkspace()
    for sync_id in (1, 2):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
        workspace.add_run(sync_id)
    h = harness_factory(workspace)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(3):
            workspace.add_run(1)
            h.refresh()
    lines = [r for r in caplog.records if "unusable field" in r.getMessage()]
    assert sorted(r.getMessage().split(":")[0] for r in lines) == ["sync 1", "sync 2"]
    assert all(r.levelno == logging.WARNING and len(r.getMessage()) < 300 for r in lines)
    assert h.exporter.refresher.snapshot.up
