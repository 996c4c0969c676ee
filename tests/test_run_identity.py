"""What is counted when the API breaks the run-id contract, over real HTTP against the simulator (issue 17).

Exactly-once counting relies on run ids: each run has one, and ids grow with creation time. Two ways an API
can break that, and what the exporter does (docs/metrics.md, "What is counted"):

* a run listed again under a new id: recognised by its fingerprint (creation and finish time, status, error
  code, record counts) among the newest counted runs, not counted again, and said once per sync an hour;
* a run below every id the exporter remembers, created after it began watching: not counted, said likewise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from census_exporter.census._requests import RetryPolicy
from census_exporter.census.client import CensusClient
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.ledger import OUT_OF_ORDER_TOLERANCE_SECONDS
from census_exporter.refresh import Refresher, RefreshSettings
from tests.conftest import TEST_TOKEN, Harness

SYNC = 5


def counted(harness: Harness, status: str = "completed") -> float | None:
    return harness.scrape().value("census_sync_runs_total", sync_id=str(SYNC), status=status)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_run_listed_again_under_a_new_id_is_counted_once_and_said_once(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_run(SYNC, "completed")
    harness = harness_factory(workspace)
    harness.refresh()
    first = workspace.add_run(SYNC, "completed", records=40)
    failed = workspace.add_run(SYNC, "failed", error_code="E")
    harness.refresh()
    assert (counted(harness), counted(harness, "failed")) == (1, 1)
    with caplog.at_level(logging.WARNING, logger="census_exporter"):
        # The API lists both finished runs again, each under a new id, twice over.
        repeats = []
        for _ in range(2):
            for original in (first, failed):
                repeats.append(workspace.add_run(SYNC, raw={**original, "id": max(workspace.runs_by_id) + 1}))
            harness.refresh()
        # A new run with its own times is counted as always, even with the same record counts.
        workspace.add_run(SYNC, "completed", records=40)
        harness.refresh()
    assert (counted(harness), counted(harness, "failed")) == (2, 1)
    said = messages(caplog, "repeats a counted run under a new id")
    assert len(said) == 1, said
    assert f"run {repeats[0]['id']} repeats" in said[0]  # names the first repeat it met
    # The repeats are remembered by id: read again, nothing changes.
    harness.refresh()
    assert (counted(harness), counted(harness, "failed")) == (2, 1)


def test_a_repeat_is_still_recognised_after_a_restart_with_the_state(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_run(SYNC, "completed")
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    run = workspace.add_run(SYNC, "completed", records=40)
    first.refresh()
    first.exporter.close()
    workspace.add_run(SYNC, raw={**run, "id": max(workspace.runs_by_id) + 1})
    second = harness_factory(workspace, storage_path=str(tmp_path), api_url=first.simulator.url)
    second.refresh()
    assert counted(second) == 1


@pytest.fixture
def watched() -> Iterator[tuple[SimulatedWorkspace, Refresher, list[float]]]:
    """A refresher over real HTTP whose wall clock the test moves (the simulator's runs carry real times)."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN, retry=RetryPolicy(max_attempts=1))
    now = [workspace.clock()]
    refresher = Refresher(
        client, RefreshSettings(cache_ttl_seconds=0, refresh_timeout_seconds=20), wall_clock=lambda: now[0]
    )
    yield workspace, refresher, now
    refresher.close()
    client.close()
    simulator.close()


def runs_counted(refresher: Refresher) -> dict[str, int]:
    snapshot = refresher.trigger().result(timeout=30)
    ledger = snapshot.syncs[SYNC].ledger
    assert ledger is not None
    return {status: count for status, count in ledger.counters.runs_by_status.items() if count}


def test_a_run_below_every_id_seen_created_after_the_baseline_is_not_counted_and_said_once(
    watched: tuple[SimulatedWorkspace, Refresher, list[float]], caplog: pytest.LogCaptureFixture
) -> None:
    workspace, refresher, now = watched
    baseline_at = now[0]
    for k in range(3):
        workspace.add_run(SYNC, "completed", run_id=1000 + k, created_at=baseline_at - 600 + k)
    assert runs_counted(refresher) == {}  # the baseline: ids 1000-1002
    now[0] += 3 * OUT_OF_ORDER_TOLERANCE_SECONDS
    with caplog.at_level(logging.WARNING, logger="census_exporter"):
        # Older history showing up below the floor is what it looks like: old, and silent.
        workspace.add_run(SYNC, "completed", run_id=900, created_at=baseline_at - 7200)
        workspace.add_run(SYNC, "completed", run_id=1003, created_at=baseline_at + 60)
        assert runs_counted(refresher) == {"completed": 1}
        assert messages(caplog, "below every run id remembered") == []
        # Runs created well after the baseline with ids below it break the contract: not counted, said once.
        for run_id in (500, 501):
            workspace.add_run(
                SYNC, "failed", run_id=run_id, created_at=baseline_at + 2 * OUT_OF_ORDER_TOLERANCE_SECONDS
            )
            workspace.add_run(SYNC, "completed", run_id=1004 + (run_id - 500))
            assert runs_counted(refresher) == {"completed": 2 + (run_id - 500)}
    said = messages(caplog, "below every run id remembered")
    assert len(said) == 1 and "run 500 " in said[0], said
